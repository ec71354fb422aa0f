"""The throughput and CPU per lifecycle event of the followers of `tickets.events` (the
metrics stage, and the router's tracker and webhook recorder), beside a bare loop
measured in the same run, on the same broker, topic and events.

    .venv/bin/python -m bench.metrics_throughput [--tickets 1000] [--runs 3]
                                                 [--max-batch 500,12] [--store sqlite]
                                                 [--only CONTENDER]

Starts its own Kafka broker in a temporary folder and fills `tickets.events` with each
ticket's lifecycle (received, segmented, routed, picked up, responded, resolved), keyed
by ticket as the pipeline writes them. Every run reads them all with a new consumer group
into an empty store (a new SQLite file, or with `--store postgresql` the tables of a
throwaway PostgreSQL server emptied; its CPU is not the metrics process' and not counted):
- bare: consume, decode each record's JSON, insert the batch's events in one statement,
  commit the offsets: the floor any consumer of the topic that keeps the events pays;
- metrics stage: the metrics service's stage (`worker.TrackTicketEvent` in the pipeline's
  loop, at least once, as the service runs it), its timelines and metrics;
- router tracker: the router's event follower in the same loop (at least once here; it
  writes in transactions in the service), its store holding the tickets as routed (with
  their clocks): it records each ticket's three reports, and passes over the rest;
- webhook recorder: the router's other follower, no endpoint registered: it reads the
  events platforms receive, and passes over the rest.
`--max-batch` caps the records a fetch takes (the stage's max_batch): 500 is a backlog's
batches; a dozen leaves shares of a few records per partition, as at a live rate, where
the cost per transaction dominates.
Prints events per second (wall) and the process' CPU ms per event (the SQLite driver's
thread included), medians of the runs, each with its ratio to the bare loop's.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer
from sqlalchemy import Column, LargeBinary, MetaData, String, Table, delete, insert
from sqlalchemy.ext.asyncio import async_sessionmaker

from bench import stage_throughput
from devtools.kafka_broker import LocalKafka
from devtools.postgres import LocalPostgres
from services.core import db, envelope, events, kafka, migrate, pipeline, topics
from services.core.db import Base
from services.core.settings import Settings
from services.metrics import exporter, worker
from services.metrics.store import TimelineStore
from services.router import service_clocks
from services.router.event_follower import FollowTicketEvent
from services.router.store import Dispatch, RoutedTickets
from services.webhooks import service as webhooks
from services.webhooks.outbox import RecordCallbacks
from services.webhooks.outbox_store import Deliveries

Kind = events.TicketEventType
BARE_EVENTS = Table("bench_events", MetaData(), Column("ticket_id", String(128)),
                    Column("type", String(64)), Column("data", LargeBinary))


CONTENDERS = ("bare", "metrics stage", "router tracker", "webhook recorder")


def lifecycle(ticket_id: str, received: datetime) -> list[events.TicketEvent]:
    """One ticket's lifecycle events, as intake, segmenter and router write them."""
    deadline = received + timedelta(hours=1)
    common = {"ticket_id": ticket_id, "department": "customer_care", "segment": "retail"}
    return [
        events.TicketEvent(ticket_id=ticket_id, type=Kind.RECEIVED, occurred_at=received,
                           received_at=received, platform="web"),
        events.TicketEvent(ticket_id=ticket_id, type=Kind.SEGMENTED, segment="retail",
                           occurred_at=received + timedelta(milliseconds=20)),
        events.TicketEvent(**common, type=Kind.ROUTED, reason="route", priority=5,
                           occurred_at=received + timedelta(milliseconds=40),
                           first_response_deadline=deadline,
                           deadlines={"first_response": deadline, "resolution": None}),
        events.TicketEvent(**common, type=Kind.PICKED_UP,
                           occurred_at=received + timedelta(minutes=3)),
        events.TicketEvent(**common, type=Kind.RESPONDED,
                           occurred_at=received + timedelta(minutes=9)),
        events.TicketEvent(**common, type=Kind.RESOLVED,
                           occurred_at=received + timedelta(minutes=30)),
    ]


async def fill(settings: Settings, tickets: int) -> list[str]:
    """The tickets' lifecycle events on `tickets.events`; the tickets' ids."""
    await kafka.ensure_topics(settings, [topics.EVENTS])
    producer = kafka.producer(settings, client_id="bench-fill")
    await producer.start()
    ticket_ids: list[str] = []
    try:
        received = datetime.now(UTC) - timedelta(hours=1)
        for n in range(tickets):
            ticket_id = str(uuid.uuid4())
            ticket_ids.append(ticket_id)
            for lifecycle_event in lifecycle(ticket_id, received + timedelta(seconds=n)):
                event = events.as_envelope(lifecycle_event, ticket_id,
                                           events.WRITTEN_BY[lifecycle_event.type])
                await kafka.send(producer, envelope.encode(topics.EVENTS, ticket_id, event))
        await producer.flush()
    finally:
        await producer.stop()
    return ticket_ids


async def route(settings: Settings, ticket_ids: list[str]) -> None:
    """The tickets as the router stored them when it routed them (with their clocks), so
    that the tracker's reports find them and move them."""
    engine = db.engine(settings.database_url)
    try:
        received = datetime.now(UTC) - timedelta(hours=1)
        clocks = service_clocks.routed(service_clocks.Targets(timedelta(hours=1)),
                                       received, None)
        await RoutedTickets(db.sessions(engine)).record_first_dispatches([Dispatch(
            ticket_id=ticket_id, department="customer_care", segment="retail", priority=5,
            deadline=received + timedelta(hours=1), steps=[], payload={}, at=received,
            clocks=clocks) for ticket_id in ticket_ids])
    finally:
        await engine.dispose()


async def bare(consumer: AIOKafkaConsumer, settings: Settings, count: int,
               max_batch: int) -> None:
    engine = db.engine(settings.database_url)
    try:
        seen = 0
        while seen < count:
            fetched = await consumer.getmany(timeout_ms=500, max_records=max_batch)
            rows = [{"ticket_id": data["ticket_id"], "type": data["type"], "data": r.value}
                    for records in fetched.values() for r in records
                    for data in (orjson.loads(r.value or b"{}"),)]
            if rows:
                async with engine.begin() as connection:
                    await connection.execute(insert(BARE_EVENTS), rows)
                await consumer.commit()
                seen += len(rows)
    finally:
        await engine.dispose()


def transform(contender: str, settings: Settings, sessions: async_sessionmaker[Any]
              ) -> pipeline.Transform:
    """The contender's transform, on the store's sessions."""
    if contender == "metrics stage":
        updates = worker.TimelineUpdates(TimelineStore(sessions), sessions)
        return worker.TrackTicketEvent(updates, export=exporter)
    routed = RoutedTickets(sessions)
    if contender == "router tracker":
        return FollowTicketEvent(routed)
    return RecordCallbacks(Deliveries(sessions), webhooks.endpoints_of(settings, sessions),
                           platforms_of=routed.platforms_of)


async def stage(consumer: AIOKafkaConsumer, settings: Settings, count: int,
                max_batch: int, contender: str) -> None:
    engine = db.engine(settings.database_url)
    producer = kafka.producer(settings, client_id="bench-follower")
    await producer.start()
    try:
        loop = pipeline.StageLoop(name=f"bench-{contender.replace(' ', '-')}",
                                  consumer=consumer, producer=producer,
                                  transform=transform(contender, settings,
                                                      db.sessions(engine)),
                                  max_batch=max_batch)
        consumer.subscribe([topics.EVENTS], listener=loop.handover)
        await stage_throughput.run_until_processed(loop, count)
    finally:
        await producer.stop()
        await engine.dispose()


async def measure(settings: Settings, contender: str, ticket_ids: list[str], count: int,
                  max_batch: int) -> tuple[float, float]:
    """(events/s, CPU ms per event) of one run, with its own group and store."""
    await migrate.upgrade(settings.database_url)
    engine = db.engine(settings.database_url)
    async with engine.begin() as connection:  # empty, on PostgreSQL's one database too
        await connection.run_sync(BARE_EVENTS.metadata.create_all)
        await connection.execute(delete(BARE_EVENTS))
        await connection.execute(delete(Base.metadata.tables["ticket_timelines"]))
        await connection.execute(delete(Base.metadata.tables["routed_tickets"]))
    await engine.dispose()
    if contender == "router tracker":
        await route(settings, ticket_ids)
    group = f"bench-{uuid.uuid4().hex[:8]}"
    consumer = kafka.consumer(settings, group_id=group, client_id=group)
    if contender == "bare":
        consumer.subscribe([topics.EVENTS])
    await consumer.start()
    try:
        # The store is made before the clock starts; the stage subscribes itself (with
        # its rebalance listener) and opens its engine and producer inside: a constant.
        wall, cpu = time.perf_counter(), time.process_time()
        if contender == "bare":
            await bare(consumer, settings, count, max_batch)
        else:
            await stage(consumer, settings, count, max_batch, contender)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    finally:
        await consumer.stop()
    return count / wall, 1e3 * cpu / count


async def bench(home: Path, tickets: int, runs: int, max_batches: list[int],
                contenders: list[str], store: str) -> None:
    broker = LocalKafka(home / "kafka", heap="512m")
    postgres = LocalPostgres(home / "postgres") if store == "postgresql" else None
    broker.start()
    try:
        if postgres is not None:
            postgres.start()
        settings = Settings(kafka_bootstrap_servers=broker.bootstrap_servers)
        ticket_ids = await fill(settings, tickets)
        count = len(ticket_ids) * len(lifecycle("t", datetime.now(UTC)))
        for max_batch in max_batches:
            results: dict[str, list[tuple[float, float]]] = {name: [] for name in contenders}
            for run in range(runs):  # interleaved: drift on a shared machine hits both
                for contender, found in results.items():
                    url = postgres.url if postgres is not None else \
                        f"sqlite+aiosqlite:///{home / f'{contender[:4]}-{max_batch}-{run}.db'}"
                    found.append(await measure(settings.model_copy(
                        update={"database_url": url}), contender, ticket_ids, count,
                        max_batch))
            report(count, max_batch, results)
    finally:
        broker.stop()
        if postgres is not None:
            postgres.stop()
            postgres.remove()


def report(count: int, max_batch: int, results: dict[str, list[tuple[float, float]]]) -> None:
    runs = len(next(iter(results.values())))
    bare_runs = results.get("bare")
    print(f"{count} events, max {max_batch} a fetch, {runs} runs each, medians"
          f"{' (ratio to bare)' if bare_runs else ''}:")
    for name, found in results.items():
        rate = statistics.median(r for r, _ in found)
        cpu = statistics.median(c for _, c in found)
        ratios = ("", "")
        if bare_runs:  # without the bare loop in the run (--only), no ratio
            ratios = (f" ({rate / statistics.median(r for r, _ in bare_runs):4.2f})",
                      f" ({cpu / statistics.median(c for _, c in bare_runs):4.2f})")
        print(f"  {name:<16} {rate:>8,.0f} events/s{ratios[0]}"
              f"  {cpu:6.3f} ms CPU/event{ratios[1]}"
              f"   runs: {', '.join(f'{r:,.0f}/s {c:.3f}ms' for r, c in found)}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickets", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--max-batch", default="500,12")
    parser.add_argument("--only", choices=CONTENDERS, help="one contender (to profile)")
    parser.add_argument("--store", choices=("sqlite", "postgresql"), default="sqlite")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-") as home:
        asyncio.run(bench(Path(home), args.tickets, args.runs,
                          [int(b) for b in args.max_batch.split(",") if b],
                          [args.only] if args.only else list(CONTENDERS), args.store))


if __name__ == "__main__":
    main()
