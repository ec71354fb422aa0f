"""The services' periodic reports take their turn as callers' reports do (services/core/
report_turns.py, `ReportTurns.periodic`): the metrics service's service-parity
measurement and the segmenter's recomputation of tiers, each run by its app (its
lifespan, on a real broker and store), waits while the only turn is held, and runs once
it is let go, without failing."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import pytest
from fastapi import FastAPI
from prometheus_client import REGISTRY

from services.core import migrate, service_context
from services.core.report_turns import OneAtATime
from services.core.settings import Settings
from services.metrics import app as metrics_app
from services.segmenter import app as segmenter_app
from tests.waits import until


@pytest.mark.parametrize(("create_app", "job", "every"), [
    (metrics_app.create_app, "service-parity", {"parity_interval_seconds": 0.2}),
    (segmenter_app.create_app, "tier-recompute", {"tier_recompute_interval_seconds": 0.2}),
], ids=["metrics", "segmenter"])
async def test_a_periodic_report_waits_for_its_turn(
        create_app: Callable[[Settings], FastAPI], job: str, every: dict[str, float],
        kafka_bootstrap: str, sqlite_url: str) -> None:
    await migrate.upgrade(sqlite_url)
    app = create_app(Settings(kafka_bootstrap_servers=kafka_bootstrap,
                              database_url=sqlite_url, reports_at_once=1,
                              log_format="text").model_copy(update=every))
    turns = service_context.of(app).report_turns
    failed_before = failed_runs(job)
    async with contextlib.AsyncExitStack() as caller:
        await caller.enter_async_context(turns.turn("a-caller"))  # the only turn
        async with app.router.lifespan_context(app):
            try:
                await until(lambda: turns.holders == 2)  # the job, waiting its turn
                async with asyncio.timeout(5):  # refused at once if the job holds it
                    with pytest.raises(OneAtATime):  # held under its own name
                        async with turns.turn(f"job:{job}"):
                            raise AssertionError("the job held no turn")
            finally:  # the caller's report done (else the job would wait for it forever)
                await caller.aclose()
            await until(lambda: turns.holders == 0)  # the job ran and gave its turn back
    assert failed_runs(job) == failed_before  # and did not fail


def failed_runs(job: str) -> float:
    return REGISTRY.get_sample_value("routing_background_runs_failed_total",
                                     {"task": job}) or 0.0
