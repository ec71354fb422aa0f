"""README: a router running its stage follows `tickets.events` too (the tracker, group
router-tracker; the webhook outbox, group router-webhooks). A stage is not restarted: one
that ended for good, a follower or the main stage, is named in `/readyz`'s 503, as a
background task that is down is, and its error is logged as it ends; the router answers
200 while all run. The router is started as it runs, on a real broker and store; the
stage's Kafka client is closed under it, so that its next fetch raises what nothing in
the stage's loop handles (as a coordination error the client raises would: a group the
broker refuses)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from fastapi import FastAPI

from services.core import service_context, stage, topics
from services.core.settings import Settings
from services.core.stage import StageRunner
from services.router import app as router_app
from tests import waits
from tests.conftest import TEST_ROUTING_TABLE


@asynccontextmanager
async def running_router(settings: Settings) -> AsyncIterator[
        tuple[FastAPI, httpx.AsyncClient]]:
    """A router running its stage and its followers (its lifespan), and a client."""
    app = router_app.create_app(settings.model_copy(update={
        "routing_table_file": TEST_ROUTING_TABLE, "router_stage": True}))
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://router") as client:
        yield app, client


def stage_named(app: FastAPI, name: str) -> StageRunner:
    context = service_context.of(app)
    [named] = [runner for runner in [context.stage, *context.followers]
               if runner is not None and runner.name == name]
    return named


def reading(runner: StageRunner) -> bool:
    """Whether the stage reads its partitions: assigned, none paused (an exactly-once
    stage holds a partition paused until it took it over: its producer opened and the
    committed offset read). Closing its client before would end the stage only once those
    reads gave up (30 s a partition), not at its next fetch."""
    consumer = runner._consumer
    return bool(consumer.assignment()) and not consumer.paused()


async def caught_up(runner: StageRunner) -> None:
    """Wait until the stage reads its partitions (`reading`) and has taken, and committed,
    every record on them: nothing in hand or in flight, each position at the last stable
    offset. Its group and topics are the services' own, where this folder's earlier tests
    left records; closing its client while a batch's commit was in flight would end the
    stage only once that commit gave up (a transaction's 30 s), not at its next fetch."""
    consumer = runner._consumer

    async def done() -> bool:
        if not reading(runner) or runner.loop._pending or runner.loop._in_flight:
            return False
        for partition in consumer.assignment():
            stable = consumer.last_stable_offset(partition)
            if stable is None or await consumer.position(partition) < stable:
                return False
        return True

    async with asyncio.timeout(60):
        while not await done():  # noqa: ASYNC110 - polling
            await asyncio.sleep(0.1)


@pytest.mark.parametrize("name", [topics.ROUTER_TRACKER_GROUP, topics.ROUTER_WEBHOOKS_GROUP,
                                  router_app.NAME])
async def test_a_stage_that_ended_is_named_in_readyz(
        stage_settings: Settings, name: str, caplog: pytest.LogCaptureFixture) -> None:
    async with running_router(stage_settings) as (app, client):
        context = service_context.of(app)
        await waits.until(lambda: context.ready() and not context.down())
        assert {runner.name for runner in context.followers} == {
            topics.ROUTER_TRACKER_GROUP, topics.ROUTER_WEBHOOKS_GROUP}
        ready = await client.get("/readyz")
        assert (ready.status_code, ready.json()) == (200, {"status": "ready"})

        ended = stage_named(app, name)
        await caught_up(ended)
        with caplog.at_level(logging.ERROR, logger=stage.__name__):
            await ended._consumer.stop()  # the client closed under the running loop
            await waits.until(lambda: ended.ended)
        answer = await client.get("/readyz")
        assert answer.status_code == 503
        assert answer.json() == {"status": "not_ready", "down": [name]}
        others = [runner for runner in [context.stage, *context.followers]
                  if runner is not None and runner is not ended]
        assert all(runner.running for runner in others)  # the others run on
        assert [record.getMessage() for record in caplog.records
                if record.name == stage.__name__] == [f"stage {name} ended with an error"]
