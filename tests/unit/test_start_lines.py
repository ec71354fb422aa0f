"""A library's lines met while a start tries (services/core/start_lines.py), with the
logs configured as a service configures them: the Kafka client's line of a mistake is
left out of a start that refuses (its own line quotes it), written when the start goes
on; the client's lines before and after the try, and ours, are written as they come."""

from __future__ import annotations

import asyncio
import io
import logging

import pytest
from aiokafka.errors import SaslAuthenticationFailed

from services.core import at_start, broker_start
from services.core.settings import Settings
from tests.unit.test_logs import configured

CLIENT = logging.getLogger("aiokafka")
OURS = logging.getLogger("services.core.stage")
UNABLE = 'Unable connect to "%s:%s": %s'  # aiokafka's bootstrap, a server it cannot use
UNABLE_NODE = "Unable connect to node with id %s: %s"
REFUSED = SaslAuthenticationFailed(
    "Authentication failed during authentication due to invalid credentials")


def errors(stream: io.StringIO) -> list[str]:
    """The ERROR lines written, their messages."""
    return [line.partition(" ERROR ")[2] for line in stream.getvalue().splitlines()
            if " ERROR " in line]


def client_line(port: int) -> str:
    return f'Unable connect to "127.0.0.1:{port}": {REFUSED}'


async def test_a_refusal_is_the_only_error_line_of_its_start() -> None:
    async def start() -> None:
        CLIENT.error(UNABLE, "127.0.0.1", 9092, REFUSED)
        OURS.error("ours, at the same time: %s", REFUSED)
        raise REFUSED

    with configured("text") as stream:
        # Before the start's try (a line of another kind: one of its kind would hold the
        # next back, library_lines).
        CLIENT.error(UNABLE_NODE, 1, REFUSED)
        with pytest.raises(at_start.Refused) as refused:
            await broker_start.outage_waited_out(start, Settings(), what="metrics")
    assert errors(stream) == [f"Unable connect to node with id 1: {REFUSED}",
                              f"ours, at the same time: {REFUSED}", refused.value.line]


async def test_the_clients_line_is_written_when_the_start_goes_on() -> None:
    async def start() -> str:
        CLIENT.error(UNABLE, "127.0.0.1", 9092, REFUSED)  # another server answered
        return "started"

    with configured("text") as stream:
        assert await broker_start.outage_waited_out(start, Settings(), what="metrics") \
            == "started"
        assert errors(stream) == [client_line(9092)]


async def test_the_lines_of_a_task_the_try_started_are_written_once_it_ended() -> None:
    """As a Kafka client's tasks, started by its start, log for the client's life."""
    later = asyncio.Event()

    async def client_task() -> None:
        await later.wait()
        CLIENT.error(UNABLE, "127.0.0.1", 9093, REFUSED)

    tasks: list[asyncio.Task[None]] = []

    async def start() -> None:
        tasks.append(asyncio.create_task(client_task()))
        raise REFUSED

    with configured("text") as stream:
        with pytest.raises(at_start.Refused) as refused:
            await broker_start.outage_waited_out(start, Settings(), what="metrics")
        later.set()
        await tasks[0]
    assert errors(stream) == [refused.value.line, client_line(9093)]
