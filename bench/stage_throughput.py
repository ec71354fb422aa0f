"""Throughput of a pipeline stage beside a bare aiokafka consume-and-produce loop,
measured in the same run, on the same broker, topic and payload.

    .venv/bin/python -m bench.stage_throughput segmenter [--tickets 20000] [--runs 3]

Starts its own Kafka broker (and SQLite store with generated customers) in a temporary
folder. Every run reads the same pre-filled input topic with a new consumer group:
- bare: consume, produce each record twice (the stage also writes two records per
  ticket), wait for the acknowledgements, commit: the floor any stage pays;
- segmenter, warm cache: the real segmenter stage with every customer cached;
- segmenter, cache misses: the cache emptied before the run and every ticket from another
  customer, so each batch's customers are loaded from the store (one query a batch).
Prints tickets per second (median of the runs) and each as a ratio of the bare loop.
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
from datetime import UTC, datetime
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from services.core import db, envelope, kafka, migrate, pipeline, tickets, topics
from services.core.settings import PROJECT_ROOT, Settings
from services.local.kafka_broker import LocalKafka
from services.segmenter import demo, rules_file, worker
from services.segmenter.cache import CustomerCache
from services.segmenter.store import CustomerStore

Stage = Callable[[Settings, str, int], Awaitable[float]]


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


async def drain(settings: Settings, topic: str, count: int,
                loop_factory: Callable[[AIOKafkaConsumer, AIOKafkaProducer], object]) -> float:
    """Time one consumer group reading `count` records of `topic` through a loop."""
    group = f"bench-{uuid.uuid4().hex[:8]}"
    consumer = kafka.consumer(settings, topic, group_id=group, client_id=group)
    producer = kafka.producer(settings, client_id=group)
    await consumer.start()
    await producer.start()
    try:
        loop = loop_factory(consumer, producer)
        started = time.perf_counter()
        await loop(count)  # type: ignore[operator]
        return count / (time.perf_counter() - started)
    finally:
        await consumer.stop()
        await producer.stop()


def bare_loop(consumer: AIOKafkaConsumer, producer: AIOKafkaProducer) -> object:
    async def run(count: int) -> None:
        seen = 0
        while seen < count:
            batch = await consumer.getmany(timeout_ms=500, max_records=500)
            acks = []
            for records in batch.values():
                for record in records:
                    for out in (topics.SEGMENTED, "bench.out"):
                        acks.append(await producer.send(out, record.value, key=record.key,
                                                        headers=list(record.headers)))
                    seen += 1
            await asyncio.gather(*acks)
            if batch:
                await consumer.commit()
    return run


def stage_loop(transform: pipeline.Transform) -> Callable[..., object]:
    def factory(consumer: AIOKafkaConsumer, producer: AIOKafkaProducer) -> object:
        loop = pipeline.StageLoop(name="bench", consumer=consumer, producer=producer,
                                  transform=transform)

        async def run(count: int) -> None:
            stop = asyncio.Event()
            task = asyncio.create_task(loop.run(stop))
            while loop.processed < count:  # noqa: ASYNC110 - polling a counter, not an event
                await asyncio.sleep(0.01)
            stop.set()
            await task
        return run
    return factory


async def segmenter_bench(home: Path, count: int, runs: int) -> None:
    broker = LocalKafka(home / "kafka", heap="768m")
    broker.start()
    database_url = f"sqlite+aiosqlite:///{home / 'store.db'}"
    settings = Settings(kafka_bootstrap_servers=broker.bootstrap_servers,
                        database_url=database_url)
    try:
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
            "bare consume-and-produce": bare_loop,
            "segmenter, warm cache": stage_loop(worker.SegmentTicket(
                lookup=warm.customer, preload=warm.preload, current_rules=lambda: rule_set)),
            "segmenter, cache misses": stage_loop(worker.SegmentTicket(
                lookup=cold.customer, preload=cold.preload, current_rules=lambda: rule_set)),
        }
        results: dict[str, list[float]] = {name: [] for name in contenders}
        for _ in range(runs):  # interleaved, so drift on a noisy machine hits all alike
            cold.cache.clear()
            for name, factory in contenders.items():
                results[name].append(await drain(settings, "bench.incoming", count, factory))
        await engine.dispose()
    finally:
        broker.stop()
    bare = statistics.median(results["bare consume-and-produce"])
    print(f"{count} tickets, {runs} runs each, medians (tickets/s, ratio to bare):")
    for name, rates in results.items():
        median = statistics.median(rates)
        print(f"  {name:<26} {median:>8,.0f}/s  {median / bare:5.2f}"
              f"   runs: {', '.join(f'{r:,.0f}' for r in rates)}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("stage", choices=["segmenter"])
    parser.add_argument("--tickets", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-") as home:
        asyncio.run(segmenter_bench(Path(home), args.tickets, args.runs))


if __name__ == "__main__":
    main()
