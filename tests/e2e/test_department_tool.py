"""The `department queue` command, run as a department runs it (a process), against the
real router and broker: it reads a department's lanes only with that department's
credential or an admin's, and it skips and reports a record it cannot read.

Each test reads lanes of a department of its own (lanes made here), so that tickets the
pipeline routes elsewhere do not mix in; its records are copies of a ticket the pipeline
really routed. The routing table names these departments (the router refuses to read for
a name its table lacks, a typo: `TestATypo`), with a name of their own for this module's
run, as the broker outlives the pipeline.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import yaml
from aiokafka import AIOKafkaProducer

from services.core import kafka, topics
from services.core.events import TicketEventType
from services.core.settings import Settings
from services.router import priority
from tests.conftest import (
    TEST_ROUTING_TABLE,
    Pipeline,
    demo_pipeline,
    department_lanes,
    read_topic,
    unique,
)

# The departments whose lanes the tests read, one each.
OWN, ANY, POISONED = unique("own"), unique("any"), unique("poisoned")
THEIRS = [unique("theirs") for _ in range(4)]
# The tests' routing table, naming them too.
TABLE = yaml.safe_load(TEST_ROUTING_TABLE.read_text(encoding="utf-8"))
TABLE["departments"].update({name: {} for name in [OWN, ANY, POISONED, *THEIRS]})


@pytest.fixture(scope="module")
def pipeline(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[Pipeline]:
    """The whole pipeline, routing by TABLE."""
    with demo_pipeline(kafka_bootstrap, tmp_path_factory.mktemp("pipeline"),
                       table=yaml.safe_dump(TABLE)) as running:
        yield running


@dataclass(frozen=True)
class Outcome:
    code: int
    tickets: list[dict[str, Any]]  # stdout, one JSON ticket a line
    errors: str


async def department_queue(pipeline: Pipeline, department: str, token: str | None
                           ) -> Outcome:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": pipeline.bootstrap,
           "ROUTER_URL": pipeline.url("router"), "LOG_FORMAT": "text"}
    env.pop("API_TOKEN", None)
    if token is not None:
        env["API_TOKEN"] = token
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.departments.cli", "queue", department, "--json",
        "--wait", "3", env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return Outcome(process.returncode,
                   [json.loads(line) for line in out.decode().splitlines() if line.strip()],
                   err.decode())


def token_of(pipeline: Pipeline, role: str, subject: str | None = None) -> str:
    return pipeline.headers(role, subject)["Authorization"].removeprefix("Bearer ")


@pytest.fixture(scope="module")
async def routed_record(pipeline: Pipeline) -> tuple[Sequence[tuple[str, bytes]], bytes]:
    """Headers and value of a ticket the pipeline routed (to public_sector)."""
    async with httpx.AsyncClient(timeout=10) as client:
        answer = await client.post(f"{pipeline.url('router')}/v1/tickets", json={
            "customer_id": "gov-ministry-1", "subject": "s", "body": "b", "channel": "web"},
            headers=pipeline.headers())
    assert answer.status_code == 202, answer.text
    ticket_id = answer.json()["ticket_id"]
    found = await read_topic(pipeline.bootstrap, *department_lanes("public_sector"), until=1,
                             within=60, keep=lambda event: event.ticket_id == ticket_id)
    assert found, "the ticket was not routed"
    record: Any = found[0][1]
    return list(record.headers), record.value


async def lane_with(pipeline: Pipeline, department: str,
                    *records: tuple[Sequence[tuple[str, bytes]], bytes]) -> str:
    """Make the department's lanes; write the records, in order, to partition 0 of its
    normal lane, which is returned."""
    lanes = priority.lane_topics(department)
    await kafka.ensure_topics(Settings(kafka_bootstrap_servers=pipeline.bootstrap), lanes)
    lane = priority.lane_topic(department, "normal")
    producer = AIOKafkaProducer(bootstrap_servers=pipeline.bootstrap)
    await producer.start()
    try:
        for headers, value in records:
            await producer.send_and_wait(lane, value, headers=list(headers), partition=0)
    finally:
        await producer.stop()
    return lane


class TestWhoMayReadAQueue:
    async def test_the_departments_own_credential_reads_it(
            self, pipeline: Pipeline, routed_record: Any) -> None:
        department = OWN
        await lane_with(pipeline, department, routed_record)
        outcome = await department_queue(pipeline, department,
                                         token_of(pipeline, "department", department))
        assert outcome.code == 0, outcome.errors
        assert len(outcome.tickets) == 1

    async def test_an_admin_reads_any(self, pipeline: Pipeline, routed_record: Any) -> None:
        department = ANY
        await lane_with(pipeline, department, routed_record)
        outcome = await department_queue(pipeline, department, token_of(pipeline, "admin"))
        assert outcome.code == 0, outcome.errors
        assert len(outcome.tickets) == 1

    @pytest.mark.parametrize(("caller", "why", "department"), [
        (("department", "business_desk"), "a department credential of business_desk",
         THEIRS[0]),
        (("platform", "tests"), "a platform credential of tests", THEIRS[1]),
        (None, "set API_TOKEN", THEIRS[2]),
        (("unknown", None), "does not accept API_TOKEN", THEIRS[3]),
    ], ids=["another department", "a platform", "no token", "unknown token"])
    async def test_any_other_is_refused_and_reads_nothing(
            self, pipeline: Pipeline, routed_record: Any,
            caller: tuple[str, str | None] | None, why: str, department: str) -> None:
        await lane_with(pipeline, department, routed_record)
        if caller is None:
            token = None
        elif caller[0] == "unknown":
            token = "rt_0123456789ab_not-a-secret-of-ours"
        else:
            token = token_of(pipeline, *caller)

        refused = await department_queue(pipeline, department, token)
        assert refused.code == 1
        assert refused.tickets == []
        assert refused.errors.startswith("refused: ") and why in refused.errors
        assert "Traceback" not in refused.errors
        if token:
            assert token.split("_", 2)[2] not in refused.errors

        # Nothing was taken off the queue: its own department still finds the ticket.
        owner = await department_queue(pipeline, department,
                                       token_of(pipeline, "department", department))
        assert len(owner.tickets) == 1


class TestATypo:
    @pytest.mark.parametrize("caller", [("department", "public_sector"), ("admin", None)],
                             ids=["of its own department", "an admin's"])
    async def test_the_router_refuses_it_in_one_line_naming_the_departments(
            self, pipeline: Pipeline, caller: tuple[str, str | None]) -> None:
        """Before the credential's scope is judged, or Kafka asked (whose client would ask
        for a lane that does not exist over and over): told as a typo, not as another
        department's queue, nor as no lane."""
        outcome = await department_queue(pipeline, "publc_sector", token_of(pipeline, *caller))
        departments = TABLE["departments"]
        assert outcome.code == 1
        assert outcome.tickets == []
        assert outcome.errors.splitlines() == [
            "refused: invalid_request: department: no department 'publc_sector' in the"
            f" routing table in force; its departments: {', '.join(sorted(departments))}"]


class TestUnreadableRecords:
    async def test_one_is_skipped_and_reported_and_the_next_ticket_read(
            self, pipeline: Pipeline, routed_record: Any) -> None:
        department = POISONED
        headers, value = routed_record
        lane = await lane_with(
            pipeline, department,
            ([], b"\xff not a CloudEvent"),
            (headers, json.dumps({"subject": "words of a customer"}).encode()),
            routed_record)
        token = token_of(pipeline, "department", department)

        outcome = await department_queue(pipeline, department, token)
        assert outcome.code == 0, outcome.errors
        assert [t["ticket_id"] for t in outcome.tickets] == [json.loads(value)["ticket_id"]]
        skipped = [line for line in outcome.errors.splitlines() if line.startswith("skipped")]
        assert len(skipped) == 2, outcome.errors
        assert skipped[0].startswith(f"skipped {lane} partition 0 offset 0: not a CloudEvent")
        assert skipped[1].startswith(f"skipped {lane} partition 0 offset 1: not a")
        assert "words of a customer" not in outcome.errors  # reasons, never values

        # Committed past: the next read finds neither again.
        again = await department_queue(pipeline, department, token)
        assert (again.code, again.tickets) == (0, [])
        assert "skipped" not in again.errors


async def department_report(pipeline: Pipeline, token: str, *args: str
                            ) -> asyncio.subprocess.Process:
    env = {**os.environ, "ROUTER_URL": pipeline.url("router"), "API_TOKEN": token,
           "LOG_FORMAT": "text"}
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.departments.cli", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)


class TestAReportSentAgain:
    """Last in the module: it restarts the router."""

    async def test_it_waits_out_a_router_restart_and_is_recorded_once(
            self, pipeline: Pipeline) -> None:
        async with httpx.AsyncClient(timeout=10) as client:
            answer = await client.post(f"{pipeline.url('router')}/v1/tickets", json={
                "customer_id": "gov-ministry-1", "subject": "s", "body": "b",
                "channel": "web"}, headers=pipeline.headers())
        assert answer.status_code == 202, answer.text
        ticket_id = answer.json()["ticket_id"]
        assert await read_topic(pipeline.bootstrap, *department_lanes("public_sector"),
                                until=1, within=60,
                                keep=lambda event: event.ticket_id == ticket_id)
        token = token_of(pipeline, "department", "public_sector")
        router = pipeline.services["router"]

        router.stop()
        try:
            tool = await department_report(pipeline, token, "respond", ticket_id,
                                           "--idempotency-key", "k-restart")
            assert tool.stderr is not None
            told = await asyncio.wait_for(tool.stderr.readline(), timeout=60)
            assert b"router unreachable" in told and b"trying again" in told, told
        finally:
            router.start()
            await asyncio.to_thread(router.wait_ready, 90)
        out, err = await asyncio.wait_for(tool.communicate(), timeout=90)
        assert tool.returncode == 0, err.decode()
        receipt = json.loads(out)

        # Sent again under its key by hand: the first receipt, and nothing published.
        again = await department_report(pipeline, token, "respond", ticket_id,
                                        "--idempotency-key", "k-restart")
        out, err = await asyncio.wait_for(again.communicate(), timeout=60)
        assert again.returncode == 0, err.decode()
        assert json.loads(out)["event_id"] == receipt["event_id"]
        responses = await read_topic(
            pipeline.bootstrap, topics.EVENTS, until=1, within=30,
            keep=lambda event: event.ticket_id == ticket_id
            and event.type == TicketEventType.RESPONDED)
        assert [event.id for event, _ in responses] == [receipt["event_id"]]
