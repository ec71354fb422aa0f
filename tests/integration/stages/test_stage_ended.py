"""README "On call": a stage that ended for good (an error escaped its loop) is not
restarted; its process is. The service logs one CRITICAL line naming the stage and that
the process exits to be restarted, answers `/healthz` 503 naming the stage (a liveness
probe agrees), and asks its app's shutdown, as SIGTERM does, with the exit status 70
(EX_SOFTWARE). Each service is started as it runs (its lifespan, on a real broker and
store), and the stage's Kafka client is closed under it, so that its next fetch raises
what nothing in the stage's loop handles (as a group the broker refuses does: the e2e
test tests/e2e/test_stage_ended.py revokes one). The exit itself (serve.run, once shut
down) is tested there, on a service's process."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import httpx
import pytest
from fastapi import FastAPI

from services.core import migrate, service_context, topics
from services.core.settings import Settings
from services.metrics import app as metrics_app
from services.router import app as router_app
from services.segmenter import app as segmenter_app
from tests import waits
from tests.conftest import TEST_ROUTING_TABLE
from tests.integration.stages.test_follower_readiness import caught_up, stage_named

SERVICES: dict[str, Callable[[Settings], FastAPI]] = {
    "router": router_app.create_app, "segmenter": segmenter_app.create_app,
    "metrics": metrics_app.create_app}


@asynccontextmanager
async def running(service: str, settings: Settings) -> AsyncIterator[
        tuple[FastAPI, httpx.AsyncClient, list[int]]]:
    """The service running its stages (its lifespan), a client, and the exit statuses its
    app's shutdown was asked with (serve.run asks uvicorn's; here they are noted)."""
    await migrate.upgrade(settings.database_url)
    app = SERVICES[service](settings.model_copy(update={
        "routing_table_file": TEST_ROUTING_TABLE, "router_stage": True}))
    exits: list[int] = []
    service_context.of(app).exit = exits.append
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url=f"http://{service}") as client:
        yield app, client, exits


@pytest.mark.parametrize(("service", "name"), [
    ("router", topics.ROUTER_TRACKER_GROUP), ("router", topics.ROUTER_WEBHOOKS_GROUP),
    ("router", router_app.NAME), ("segmenter", segmenter_app.NAME),
    ("metrics", metrics_app.NAME)])
async def test_a_stage_that_ended_has_its_process_restarted(
        stage_settings: Settings, service: str, name: str,
        caplog: pytest.LogCaptureFixture) -> None:
    async with running(service, stage_settings) as (app, client, exits):
        context = service_context.of(app)
        await waits.until(lambda: context.ready() and not context.down())
        alive = await client.get("/healthz")
        assert (alive.status_code, alive.json()) == (200, {"status": "ok"})

        ended = stage_named(app, name)
        await caught_up(ended)
        with caplog.at_level(logging.INFO):
            await ended._consumer.stop()  # the client closed under the running loop
            await waits.until(lambda: ended.ended)
        assert exits == [os.EX_SOFTWARE] == [70]
        critical = [record.getMessage() for record in caplog.records
                    if record.levelno >= logging.CRITICAL]
        assert critical == [f"stage {name} ended for good: the process exits (status 70)"
                            " to be restarted"]
        alive = await client.get("/healthz")
        assert alive.status_code == 503
        assert alive.json() == {"status": "exiting", "ended": [name]}
        ready = await client.get("/readyz")
        assert (ready.status_code, ready.json()["down"]) == (503, [name])
    # The shutdown (as on SIGTERM) stopped every stage; it stayed named as ended.
    assert ended.ended
    assert exits == [70]  # asked once


async def test_a_stage_told_to_finish_has_no_exit_asked(stage_settings: Settings) -> None:
    """SIGTERM's shutdown finishes every stage: none ended for good, no exit status is
    asked (the process exits 0)."""
    async with running("metrics", stage_settings) as (app, _client, exits):
        context = service_context.of(app)
        await waits.until(lambda: context.ready() and not context.down())
    assert context.stage is not None and not context.stage.ended
    assert exits == []
