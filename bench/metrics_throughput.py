"""The metrics stage's throughput and CPU per lifecycle event, beside a bare loop measured
in the same run, on the same broker, topic and events.

    .venv/bin/python -m bench.metrics_throughput [--tickets 1000] [--runs 3]
                                                 [--max-batch 500,12] [--store sqlite]

Starts its own Kafka broker in a temporary folder and fills `tickets.events` with each
ticket's lifecycle (received, segmented, routed, picked up, responded, resolved), keyed
by ticket as the pipeline writes them. Every run reads them all with a new consumer group
into an empty store (a new SQLite file, or with `--store postgresql` the tables of a
throwaway PostgreSQL server emptied; its CPU is not the metrics process' and not counted):
- bare: consume, decode each record's JSON, insert the batch's events in one statement,
  commit the offsets: the floor any consumer of the topic that keeps the events pays;
- metrics stage: the metrics service's stage (`worker.TrackTicketEvent` in the pipeline's
  loop, at least once, as the service runs it), its timelines and metrics.
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

import orjson
from aiokafka import AIOKafkaConsumer
from sqlalchemy import Column, LargeBinary, MetaData, String, Table, delete, insert

from bench import stage_throughput
from devtools.kafka_broker import LocalKafka
from devtools.postgres import LocalPostgres
from services.core import db, envelope, events, kafka, migrate, pipeline, topics
from services.core.db import Base
from services.core.settings import Settings
from services.metrics import exporter, worker
from services.metrics.store import TimelineStore

Kind = events.TicketEventType
BARE_EVENTS = Table("bench_events", MetaData(), Column("ticket_id", String(128)),
                    Column("type", String(64)), Column("data", LargeBinary))


CONTENDERS = ("bare", "metrics stage")


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


async def fill(settings: Settings, tickets: int) -> int:
    """The tickets' lifecycle events on `tickets.events`; how many."""
    await kafka.ensure_topics(settings, [topics.EVENTS])
    producer = kafka.producer(settings, client_id="bench-fill")
    await producer.start()
    count = 0
    try:
        received = datetime.now(UTC) - timedelta(hours=1)
        for n in range(tickets):
            ticket_id = str(uuid.uuid4())
            for lifecycle_event in lifecycle(ticket_id, received + timedelta(seconds=n)):
                event = events.as_envelope(lifecycle_event, ticket_id,
                                           events.WRITTEN_BY[lifecycle_event.type])
                await kafka.send(producer, envelope.encode(topics.EVENTS, ticket_id, event))
                count += 1
        await producer.flush()
    finally:
        await producer.stop()
    return count


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


async def stage(consumer: AIOKafkaConsumer, settings: Settings, count: int,
                max_batch: int) -> None:
    engine = db.engine(settings.database_url)
    producer = kafka.producer(settings, client_id="bench-metrics")
    await producer.start()
    try:
        sessions = db.sessions(engine)
        updates = worker.TimelineUpdates(TimelineStore(sessions), sessions)
        loop = pipeline.StageLoop(name="bench-metrics", consumer=consumer, producer=producer,
                                  transform=worker.TrackTicketEvent(updates, export=exporter),
                                  max_batch=max_batch)
        consumer.subscribe([topics.EVENTS], listener=loop.handover)
        await stage_throughput.run_until_processed(loop, count)
    finally:
        await producer.stop()
        await engine.dispose()


async def measure(settings: Settings, contender: str, count: int, max_batch: int
                  ) -> tuple[float, float]:
    """(events/s, CPU ms per event) of one run, with its own group and store."""
    await migrate.upgrade(settings.database_url)
    engine = db.engine(settings.database_url)
    async with engine.begin() as connection:  # empty, on PostgreSQL's one database too
        await connection.run_sync(BARE_EVENTS.metadata.create_all)
        await connection.execute(delete(BARE_EVENTS))
        await connection.execute(delete(Base.metadata.tables["ticket_timelines"]))
    await engine.dispose()
    group = f"bench-{uuid.uuid4().hex[:8]}"
    consumer = kafka.consumer(settings, group_id=group, client_id=group)
    if contender == "bare":
        consumer.subscribe([topics.EVENTS])
    await consumer.start()
    try:
        # The store is made before the clock starts; the stage subscribes itself (with
        # its rebalance listener) and opens its engine and producer inside: a constant.
        wall, cpu = time.perf_counter(), time.process_time()
        run = bare if contender == "bare" else stage
        await run(consumer, settings, count, max_batch)
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
        count = await fill(settings, tickets)
        for max_batch in max_batches:
            results: dict[str, list[tuple[float, float]]] = {name: [] for name in contenders}
            for run in range(runs):  # interleaved: drift on a shared machine hits both
                for contender, found in results.items():
                    url = postgres.url if postgres is not None else \
                        f"sqlite+aiosqlite:///{home / f'{contender[:4]}-{max_batch}-{run}.db'}"
                    found.append(await measure(settings.model_copy(
                        update={"database_url": url}), contender, count, max_batch))
            report(count, max_batch, results)
    finally:
        broker.stop()
        if postgres is not None:
            postgres.stop()
            postgres.remove()


def report(count: int, max_batch: int, results: dict[str, list[tuple[float, float]]]) -> None:
    runs = len(next(iter(results.values())))
    print(f"{count} events, max {max_batch} a fetch, {runs} runs each, medians (ratio to bare):")
    rate0 = statistics.median(r for r, _ in results.get("bare", [(1.0, 1.0)]))
    cpu0 = statistics.median(c for _, c in results.get("bare", [(1.0, 1.0)]))
    for name, found in results.items():
        rate = statistics.median(r for r, _ in found)
        cpu = statistics.median(c for _, c in found)
        print(f"  {name:<14} {rate:>8,.0f} events/s ({rate / rate0:4.2f})"
              f"  {cpu:6.3f} ms CPU/event ({cpu / cpu0:4.2f})"
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
