"""Stop PostgreSQL for ~10 s while tickets flow, then start it again: nothing is lost,
and tickets keep flowing.

The intake needs no database (no Idempotency-Key here), so it keeps answering 202. For
the store's grace period (3 s here) the stages retry a batch that met a database error;
past it the segmenter segments cached customers as usual and gives customers it has never
seen (a walk-in every third ticket) the degraded segment, flagged on the ticket, and the
router routes on and keeps ticket states until the store is back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import NullPool, select
from sqlalchemy.ext.asyncio import create_async_engine

from devtools import demo
from devtools.postgres import LocalPostgres
from services.core import tickets, topics
from services.segmenter.models import CustomerFeaturesRow
from tests.conftest import Pipeline, read_topic, unique
from tests.faults import harness, lane_watch, ticket_load
from tests.faults.conftest import Results, Row

OUTAGE_SECONDS = 10.0
GRACE_SECONDS = 3.0
# Known customers, and walk-ins the segmenter cannot have cached when the store is down.
CUSTOMERS = [customer for n in range(1500)
             for customer in (ticket_load.CUSTOMERS[n % 8], f"walk-in-{n}")]


@pytest.fixture
async def own_postgres(tmp_path: Path) -> AsyncIterator[LocalPostgres]:
    server = LocalPostgres(tmp_path / "postgres")
    await asyncio.to_thread(server.start)
    try:
        await demo.seed_if_empty(server.url, count=100)
        yield server
    finally:
        await asyncio.to_thread(server.remove)


async def tickets_raised(database_url: str) -> dict[str, int]:
    engine = create_async_engine(database_url, poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            rows = await connection.execute(
                select(CustomerFeaturesRow.customer_id, CustomerFeaturesRow.tickets_raised)
                .where(CustomerFeaturesRow.customer_id.in_(ticket_load.CUSTOMERS)))
            return {customer_id: count for customer_id, count in rows}
    finally:
        await engine.dispose()


async def test_database_outage_delays_but_loses_nothing(
        own_postgres: LocalPostgres, kafka_bootstrap: str, tmp_path: Path,
        results: Results) -> None:
    began = time.monotonic()
    raised_before = await tickets_raised(own_postgres.url)
    pipeline = Pipeline(kafka_bootstrap, own_postgres.url, tmp_path / "logs",
                        extra_env={"TICKETS_RAISED_FLUSH_SECONDS": "1",
                                   "STORE_OUTAGE_GRACE_SECONDS": str(GRACE_SECONDS)})
    intake = pipeline.url("router")
    load = ticket_load.Load(lambda: [intake], headers=pipeline.headers(), prefix=unique("db-stop"),
                            rate=30, limit=3000, customers=CUSTOMERS)
    async with harness.running(pipeline) as shutdown, \
            lane_watch.Watch(kafka_bootstrap, harness.all_lanes(), load.owns) as routed, \
            lane_watch.Watch(kafka_bootstrap, [topics.SEGMENTED], load.owns) as segmented:
        async with load:
            await load.run_for(3.0)
            await asyncio.to_thread(own_postgres.stop)
            stopped_at = time.monotonic()
            await load.run_for(OUTAGE_SECONDS)
            await asyncio.to_thread(own_postgres.start)
            restarted_at = time.monotonic()
            await load.run_for(3.0)
        outcome = await harness.settle(kafka_bootstrap, load, routed)
        drained = harness.drain_time(load, routed, restarted_at)
        delivered = await read_topic(kafka_bootstrap, *harness.all_lanes(),
                                     until=len(outcome.delivered), keep=load.owns)
        degraded = [event for event, _ in delivered if event.data["segmentation"]["degraded"]]
        async with httpx.AsyncClient(base_url=intake, headers=pipeline.headers("admin"),
                                     timeout=10) as admin:
            states = [(await admin.get(f"/v1/tickets/{event.ticket_id}")).status_code
                      for event in degraded[:20]]
    # The segmenter flushes its tickets-raised counts once more as it stops.
    raised_after = await tickets_raised(own_postgres.url)

    while_down = load.statuses(stopped_at, restarted_at)
    accepted = while_down[202]
    # A batch in hand when the server stopped may still have made it: allow a second.
    routed_while_down = routed.seen_between(stopped_at + 1.0, restarted_at)
    segmented_while_down = segmented.seen_between(stopped_at + 1.0, restarted_at)
    counted = sum(1 for ticket_id in outcome.copies
                  if load.customer_of(outcome.subject_of[ticket_id]) in raised_before)
    raised = sum(raised_after.values()) - sum(raised_before.values())
    drained_text = "never" if drained is None else f"{drained:.1f}s"
    results.add(Row.of("3 stop PostgreSQL 10s", outcome, seconds=time.monotonic() - began,
                       recovery=(
        f"queues caught up {drained_text} after restart; while down: intake 202 x{accepted}"
        f" (other {while_down.total() - accepted}),"
        f" segmented {segmented_while_down}, routed {routed_while_down}"
        f" ({len(degraded)} with the degraded segment);"
        f" tickets_raised +{raised} for {counted} tickets"
        f"{shutdown.describe()}")))
    assert not outcome.lost, f"lost {sorted(outcome.lost)[:5]}; logs in {tmp_path / 'logs'}"
    assert not outcome.duplicated, f"duplicated {sorted(outcome.duplicated)[:5]}"
    assert accepted == while_down.total(), "the intake refused tickets while the store was down"
    assert routed_while_down > 0, "tickets stopped flowing while the store was down"
    assert degraded, "no walk-in got the degraded segment while the store was down"
    for event in degraded:
        assert load.customer_of(event.data["subject"]).startswith("walk-in-")
        assert event.data["segmentation"]["segment"] == tickets.DEGRADED_SEGMENT
        assert event.data["routing"]["department"] == "customer_care"  # the fallback
    assert set(states) == {200}, "states kept during the outage were not written after it"
    # Batches retried during the grace period count their tickets once.
    assert raised == counted, f"tickets_raised grew by {raised} for {counted} tickets"
