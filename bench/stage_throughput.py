"""Throughput of a pipeline stage beside bare aiokafka consume-and-produce loops (at
least once, and exactly once), measured in the same run, on the same broker, topic and
payload.

    .venv/bin/python -m bench.stage_throughput segmenter [--tickets 20000] [--runs 3]
    .venv/bin/python -m bench.stage_throughput router [--tickets 20000] [--runs 3]

Starts its own Kafka broker (and SQLite store with generated customers) in a temporary
folder, and warms its JIT (bench/broker_warmup.py). Every run reads the same pre-filled
input topic with a new consumer group:
- bare: consume, produce each record twice (the stage also writes two records per
  ticket), wait for the acknowledgements, commit: the floor any stage pays;
- bare, exactly once: the same, each batch and its consumed offsets in one transaction
  of one transactional producer (what Kafka's transactions alone cost; the stages run
  one per input partition of each batch);
- segmenter, warm cache: the real segmenter stage with every customer cached;
- segmenter, cache misses: the cache emptied before the run and every ticket from another
  customer, so each batch's customers are loaded from the store (one query a batch).
- router, at least once / exactly once: the real router stage (routing table of
  config/routing.yaml, state and trace written to SQLite once per batch), committing
  offsets after the acknowledgements, or in one Kafka transaction per input partition
  of each batch (one transactional producer per partition).
- segmenter, exactly once: the warm-cache segmenter with one transactional producer per
  input partition, as the service runs it by default.
Prints tickets per second (median of the runs), each as a ratio of the bare loop, and the
exactly-once stages also as a ratio of the bare exactly-once loop; then the bench
process's CPU a ticket over each drain (what the loop itself spends, less noisy than the
rates on a shared machine).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from sqlalchemy import delete

from bench import broker_warmup
from devtools import demo
from devtools.kafka_broker import LocalKafka
from services.core import (
    collector,
    db,
    envelope,
    kafka,
    migrate,
    partition_producers,
    pipeline,
    tickets,
    topics,
)
from services.core.settings import PROJECT_ROOT, Settings
from services.router import priority, table_file
from services.router import worker as router_worker
from services.router.models import RoutedTicketRow
from services.router.store import RoutedTickets
from services.segmenter import rules_file, worker
from services.segmenter.cache import CustomerCache
from services.segmenter.store import CustomerStore

Stage = Callable[[Settings, str, int], Awaitable[float]]
BARE = "bare consume-and-produce"
BARE_EXACTLY_ONCE = "bare, exactly once"


async def warm_broker(broker: LocalKafka) -> None:
    """The new broker's JIT warmed first, so that the first contender does not pay for
    it (bench/broker_warmup.py)."""
    assert broker.pid is not None
    warmed = await broker_warmup.warm(broker.bootstrap_servers, broker.pid)
    print(f"broker warmed for {warmed.seconds:.0f}s", flush=True)


async def fill(settings: Settings, topic: str, count: int, customers: list[str]) -> None:
    await kafka.ensure_topics(settings, [topic, *topics.PIPELINE, "bench.out"])
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers,
                                linger_ms=5)
    await producer.start()
    try:
        for n in range(count):
            ticket_id = str(uuid.uuid4())
            customer_id = customers[n % len(customers)]
            ticket = tickets.Ticket(ticket_id=ticket_id, customer_id=customer_id,
                                    subject=f"Question {n}", body="Where is my order?" * 5,
                                    channel="email", kind="question",
                                    received_at=datetime.now(UTC))
            event = envelope.Event(type="ticket.received", source="/bench",
                                   ticket_id=ticket_id, correlation_id=ticket_id,
                                   data=ticket.model_dump(mode="json"))
            await producer.send(topic, envelope.to_value(event), key=customer_id.encode(),
                                headers=envelope.to_headers(event))
        await producer.flush()
    finally:
        await producer.stop()


Contender = Callable[[Settings, str, AIOKafkaConsumer, AIOKafkaProducer, str],
                     tuple[Callable[[int], Awaitable[None]], Callable[[], Awaitable[None]]]]
"""Subscribes the consumer to the topic; returns how to run the loop and what to close."""


@dataclass(frozen=True)
class Drained:
    """One drain: tickets a second, and the bench process's CPU a ticket over it (the
    stage's or loop's own; the broker runs in a process of its own)."""

    rate: float
    cpu_us: float


async def drain(settings: Settings, topic: str, count: int, contender: Contender) -> Drained:
    """Time one consumer group reading `count` records of `topic` through a loop."""
    group = f"bench-{uuid.uuid4().hex[:8]}"
    consumer = kafka.consumer(settings, group_id=group, client_id=group)
    producer = kafka.producer(settings, client_id=group)
    run, close = contender(settings, topic, consumer, producer, group)
    await consumer.start()
    await producer.start()
    try:
        started, cpu = time.perf_counter(), time.process_time()
        await run(count)
        return Drained(count / (time.perf_counter() - started),
                       (time.process_time() - cpu) / count * 1e6)
    finally:
        await consumer.stop()
        await producer.stop()
        await close()


async def nothing() -> None:
    pass


async def run_until_processed(loop: pipeline.StageLoop, count: int) -> None:
    """Run the stage's loop until it has processed `count` records, then stop it."""
    stop = asyncio.Event()
    task = asyncio.create_task(loop.run(stop))
    while loop.processed < count:  # noqa: ASYNC110 - polling a counter, not an event
        await asyncio.sleep(0.01)
    stop.set()
    await task


async def forward_twice(producer: AIOKafkaProducer,
                        batch: dict[TopicPartition, list[ConsumerRecord]]) -> int:
    """Each record produced twice (a stage writes two records a ticket), acknowledged;
    returns how many records the batch held."""
    acks = []
    for records in batch.values():
        for record in records:
            for out in (topics.SEGMENTED, "bench.out"):
                acks.append(await producer.send(out, record.value, key=record.key,
                                                headers=list(record.headers)))
    await asyncio.gather(*acks)
    return sum(len(records) for records in batch.values())


def bare_loop(_settings: Settings, topic: str, consumer: AIOKafkaConsumer,
              producer: AIOKafkaProducer, _group: str
              ) -> tuple[Callable[[int], Awaitable[None]], Callable[[], Awaitable[None]]]:
    consumer.subscribe([topic])

    async def run(count: int) -> None:
        seen = 0
        while seen < count:
            batch = await consumer.getmany(timeout_ms=500, max_records=500)
            seen += await forward_twice(producer, batch)
            if batch:
                await consumer.commit()
    return run, nothing


def bare_exactly_once(settings: Settings, topic: str, consumer: AIOKafkaConsumer,
                      _producer: AIOKafkaProducer, group: str
                      ) -> tuple[Callable[[int], Awaitable[None]], Callable[[], Awaitable[None]]]:
    """The bare loop with each batch, and its consumed offsets, in one transaction."""
    consumer.subscribe([topic])
    producer = kafka.producer(settings, client_id=group, transactional_id=f"{group}-bare")

    async def run(count: int) -> None:
        await producer.start()
        seen = 0
        while seen < count:
            batch = await consumer.getmany(timeout_ms=500, max_records=500)
            if not batch:
                continue
            async with producer.transaction():
                seen += await forward_twice(producer, batch)
                await producer.send_offsets_to_transaction(
                    {partition: records[-1].offset + 1
                     for partition, records in batch.items()}, group)
    return run, producer.stop


def stage_loop(transform: pipeline.Transform, *, exactly_once: bool = False) -> Contender:
    """The stage's loop; exactly once: one transactional producer per input partition."""
    def contender(settings: Settings, topic: str, consumer: AIOKafkaConsumer,
                  producer: AIOKafkaProducer, group: str
                  ) -> tuple[Callable[[int], Awaitable[None]], Callable[[], Awaitable[None]]]:
        producers = partition_producers.PartitionProducers(
            lambda transactional_id: kafka.producer(settings, client_id=group,
                                                    transactional_id=transactional_id),
            group_id=group) if exactly_once else None
        loop = pipeline.StageLoop(name="bench", consumer=consumer, transform=transform,
                                  producer=None if exactly_once else producer,
                                  producers=producers)
        consumer.subscribe([topic], listener=loop.handover)

        async def run(count: int) -> None:
            await run_until_processed(loop, count)
        return run, producers.close_all if producers is not None else nothing
    return contender


async def segmenter_bench(home: Path, count: int, runs: int) -> None:
    broker = LocalKafka(home / "kafka", heap="768m")
    broker.start()
    database_url = f"sqlite+aiosqlite:///{home / 'store.db'}"
    settings = Settings(kafka_bootstrap_servers=broker.bootstrap_servers,
                        database_url=database_url)
    try:
        await warm_broker(broker)
        # One customer per ticket, in random order: a cold cache misses on every ticket.
        await demo.seed_if_empty(database_url, count=count)
        customers = [g.customer["customer_id"] for g in demo.generate(count)]
        random.Random(2).shuffle(customers)
        await fill(settings, "bench.incoming", count, customers)
        await migrate.upgrade(database_url)
        engine = db.engine(database_url)
        rule_set = rules_file.load(PROJECT_ROOT / "config" / "segments.yaml")
        warm = CustomerStore(db.sessions(engine),
                             cache=CustomerCache(max_customers=2 * count, ttl_seconds=3600))
        cold = CustomerStore(db.sessions(engine),
                             cache=CustomerCache(max_customers=2 * count, ttl_seconds=3600))
        for store in (warm, cold):
            await store.load_cutoffs()
        await warm.preload(set(customers))
        contenders = {
            BARE: bare_loop,
            BARE_EXACTLY_ONCE: bare_exactly_once,
            "segmenter, warm cache": stage_loop(worker.SegmentTicket(
                lookup=warm.customer, preload=warm.preload, current_rules=lambda: rule_set)),
            "segmenter, cache misses": stage_loop(worker.SegmentTicket(
                lookup=cold.customer, preload=cold.preload, current_rules=lambda: rule_set)),
            "segmenter, exactly once": stage_loop(worker.SegmentTicket(
                lookup=warm.customer, preload=warm.preload, current_rules=lambda: rule_set),
                exactly_once=True),
        }
        results: dict[str, list[Drained]] = {name: [] for name in contenders}
        for _ in range(runs):  # interleaved, so drift on a noisy machine hits all alike
            cold.cache.clear()
            for name, factory in contenders.items():
                results[name].append(await drain(settings, "bench.incoming", count, factory))
        await engine.dispose()
    finally:
        broker.stop()
    report(count, runs, results)


async def router_bench(home: Path, count: int, runs: int) -> None:
    broker = LocalKafka(home / "kafka", heap="768m")
    broker.start()
    database_url = f"sqlite+aiosqlite:///{home / 'router.db'}"
    settings = Settings(kafka_bootstrap_servers=broker.bootstrap_servers,
                        database_url=database_url)
    table = table_file.load(PROJECT_ROOT / "config" / "routing.yaml")
    try:
        await warm_broker(broker)
        await migrate.upgrade(database_url)
        await kafka.ensure_topics(settings, [topic for department in table.departments
                                             for topic in priority.lane_topics(department)])
        await fill_segmented(settings, "bench.segmented", count)
        engine = db.engine(database_url)
        routed = RoutedTickets(db.sessions(engine))

        def route() -> pipeline.Transform:
            return router_worker.RouteTicket(lambda: table, routed=routed)

        contenders = {
            BARE: bare_loop,
            BARE_EXACTLY_ONCE: bare_exactly_once,
            "router, at least once": stage_loop(route()),
            "router, exactly once": stage_loop(route(), exactly_once=True),
        }
        results: dict[str, list[Drained]] = {name: [] for name in contenders}
        for _ in range(runs):
            for name, factory in contenders.items():
                # Each drain routes the same tickets: as new ones, not replays of tickets
                # stored by the drain before (which would publish them as stored).
                async with engine.begin() as connection:
                    await connection.execute(delete(RoutedTicketRow))
                results[name].append(await drain(settings, "bench.segmented", count, factory))
        await engine.dispose()
    finally:
        broker.stop()
    report(count, runs, results)


async def fill_segmented(settings: Settings, topic: str, count: int) -> None:
    await kafka.ensure_topics(settings, [topic, *topics.PIPELINE, "bench.out"])
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers,
                                linger_ms=5)
    await producer.start()
    segments = [("government", "most_valuable"), ("business", "existing"),
                ("key_accounts", "most_valuable"), ("growth", "most_growable"),
                ("potential", "potential"), ("general", "existing")]
    try:
        for n in range(count):
            ticket_id = str(uuid.uuid4())
            segment, tier = segments[n % len(segments)]
            ticket = tickets.SegmentedTicket(
                ticket_id=ticket_id, customer_id=f"c-{n % 5000}", subject=f"Question {n}",
                body="Where is my order?" * 5, channel="email", kind="question",
                received_at=datetime.now(UTC),
                segmentation=tickets.Segmentation(segment=segment, rule="r",
                                                  rules_version="v", customer_known=True,
                                                  tier=tier))
            event = envelope.Event(type="ticket.segmented", source="/bench",
                                   ticket_id=ticket_id, correlation_id=ticket_id,
                                   data=ticket.model_dump(mode="json"))
            await producer.send(topic, envelope.to_value(event), key=ticket.customer_id.encode(),
                                headers=envelope.to_headers(event))
        await producer.flush()
    finally:
        await producer.stop()


def report(count: int, runs: int, results: dict[str, list[Drained]]) -> None:
    bare = statistics.median(d.rate for d in results[BARE])
    bare_eo = statistics.median(d.rate for d in results[BARE_EXACTLY_ONCE])
    print(f"{count} tickets, {runs} runs each, medians (tickets/s, ratio to bare; exactly"
          " once, ratio to bare exactly once too):")
    for name, drains in results.items():
        median = statistics.median(d.rate for d in drains)
        eo = f"  {median / bare_eo:5.2f}" if "exactly once" in name else " " * 7
        print(f"  {name:<26} {median:>8,.0f}/s  {median / bare:5.2f}{eo}"
              f"   runs: {', '.join(f'{d.rate:,.0f}' for d in drains)}")
    print("CPU of the bench process a ticket (us, median; runs):")
    for name, drains in results.items():
        print(f"  {name:<26} {statistics.median(d.cpu_us for d in drains):>6,.0f}"
              f"   runs: {', '.join(f'{d.cpu_us:,.0f}' for d in drains)}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("stage", choices=["segmenter", "router"])
    parser.add_argument("--tickets", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    collector.freeze_what_is_loaded()  # as a service does before it serves (core/serve.py)
    with tempfile.TemporaryDirectory(prefix="bench-") as home:
        bench = segmenter_bench if args.stage == "segmenter" else router_bench
        asyncio.run(bench(Path(home), args.tickets, args.runs))


if __name__ == "__main__":
    main()
