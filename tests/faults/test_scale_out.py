"""Every stage runs as two instances on one PostgreSQL store: start a second segmenter,
router (intake, router stage and its report follower) and metrics service mid-stream
(their groups rebalance), then stop (SIGTERM) the original instances: every ticket the
intakes acknowledged is in a department queue exactly once, has its timeline, and the
remaining router follows departments' reports on them."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import httpx
from sqlalchemy import func, select

from devtools import ports
from devtools.processes import ServiceProcess
from services.core import db
from services.metrics.store import TimelineRow
from tests.conftest import Pipeline, unique
from tests.faults import harness, lane_watch, ticket_load
from tests.faults.conftest import Results, Row

STAGES = ("segmenter", "router", "metrics")  # stopped in this order


def second_instance(pipeline: Pipeline, name: str, logs: Path) -> ServiceProcess:
    port = ports.free_port()
    env = {**pipeline.env, f"{name.upper()}_PORT": str(port), "INSTANCE_ID": "1"}
    return ServiceProcess(name, port, env, logs / f"{name}-1.log")


async def timelines_routed(database_url: str, ticket_ids: set[str], *,
                           within: float) -> int:
    """How many of the tickets have a timeline with their routing, waiting (bounded)
    until all have."""
    engine = db.engine(database_url)
    deadline = time.monotonic() + within
    try:
        while True:
            async with engine.connect() as connection:
                found = (await connection.execute(
                    select(func.count()).select_from(TimelineRow)
                    .where(TimelineRow.ticket_id.in_(ticket_ids),
                           TimelineRow.routed_at.is_not(None)))).scalar_one()
            if found == len(ticket_ids) or time.monotonic() > deadline:
                return int(found)
            await asyncio.sleep(0.5)
    finally:
        await engine.dispose()


async def report_responded(router: str, pipeline: Pipeline, ticket_ids: list[str], *,
                           within: float) -> list[str]:
    """Each ticket's department reports a response on the router; the tickets whose
    state the router then shows as responded (waiting, bounded, for its follower)."""
    admin = pipeline.headers("admin")
    async with httpx.AsyncClient(base_url=router, timeout=10) as client:
        for ticket_id in ticket_ids:
            state = (await client.get(f"/v1/tickets/{ticket_id}", headers=admin)).json()
            answer = await client.post(
                f"/v1/tickets/{ticket_id}/events", json={"type": "responded"},
                headers=pipeline.headers("department", state["department"]))
            assert answer.status_code == 202, answer.text
        deadline = time.monotonic() + within
        while True:
            responded = [ticket_id for ticket_id in ticket_ids if (await client.get(
                f"/v1/tickets/{ticket_id}", headers=admin)).json()["status"] == "responded"]
            if len(responded) == len(ticket_ids) or time.monotonic() > deadline:
                return responded
            await asyncio.sleep(0.5)


async def test_scaling_out_and_in_loses_and_duplicates_nothing(
        kafka_bootstrap: str, seeded_postgres: str, tmp_path: Path, results: Results) -> None:
    began = time.monotonic()
    logs = tmp_path / "logs"
    pipeline = Pipeline(kafka_bootstrap, seeded_postgres, logs)
    originals = pipeline.services
    extra = {name: second_instance(pipeline, name, logs) for name in STAGES}
    intakes = [originals["router"].url]
    load = ticket_load.Load(lambda: intakes, headers=pipeline.headers(), prefix=unique("scale"),
                            rate=30, limit=3000)
    exit_codes: dict[str, int | None] = {}
    async with harness.running(pipeline) as shutdown, \
            lane_watch.Watch(kafka_bootstrap, harness.all_lanes(), load.owns) as watch:
        try:
            async with load:
                await load.run_for(2.0)
                for service in extra.values():
                    service.start()
                await asyncio.gather(*(asyncio.to_thread(service.wait_ready, 90)
                                       for service in extra.values()))
                intakes.append(extra["router"].url)
                await load.run_for(3.0)
                for name in STAGES:
                    if name == "router":
                        intakes.remove(originals["router"].url)
                    exit_codes[name] = await asyncio.to_thread(originals[name].stop)
                stopped_at = time.monotonic()
                await load.run_for(3.0)
            outcome = await harness.settle(kafka_bootstrap, load, watch)
            drained = harness.drain_time(load, watch, stopped_at)
            acknowledged = set(load.acknowledged)
            with_timelines = await timelines_routed(seeded_postgres, acknowledged, within=60)
            sample = sorted(outcome.delivered)[:5]
            responded = await report_responded(extra["router"].url, pipeline, sample,
                                               within=30)
        finally:
            await asyncio.gather(*(asyncio.to_thread(service.stop)
                                   for service in extra.values()))

    drained_text = "never" if drained is None else f"{drained:.1f}s"
    results.add(Row.of("5 second segmenter+router+metrics (PostgreSQL), SIGTERM originals",
                       outcome, seconds=time.monotonic() - began, recovery=(
        f"queues caught up {drained_text} after the originals stopped;"
        f" {with_timelines}/{len(acknowledged)} timelines;"
        f" their exit codes {sorted(set(exit_codes.values()), key=str)}"
        f"{shutdown.describe()}")))
    # uvicorn raises the signal again once its shutdown is done: -SIGTERM is a clean end.
    assert set(exit_codes.values()) <= {0, -signal.SIGTERM}, exit_codes
    for name in exit_codes:
        log = originals[name].log_file.read_text(errors="replace")
        assert "Application shutdown complete" in log, f"{name} did not shut down cleanly"
    assert not outcome.lost, f"lost {sorted(outcome.lost)[:5]}; logs in {logs}"
    assert not outcome.duplicated, f"duplicated {sorted(outcome.duplicated)[:5]}"
    assert with_timelines == len(acknowledged), f"timelines missing; logs in {logs}"
    assert responded == sample, f"reports not followed; logs in {logs}"
