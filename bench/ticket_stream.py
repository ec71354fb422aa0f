"""The tickets bench/segmenter_memory.py offers: the same ticket to the segmenter's topic
and the bare stage's, a fill from distinct customers then a constant rate with Zipf-like
popularity, and the segmenter's committed offsets to know when it has caught up."""

from __future__ import annotations

import argparse
import asyncio
import itertools
import random
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from cachetools import TTLCache

from bench import baseline, customer_base
from bench.rss_timeline import RssTimeline
from services.core import envelope, tickets, topics
from services.core.settings import Settings


def record(customer_id: str, n: int) -> tuple[bytes, list[tuple[str, bytes]]]:
    ticket_id = str(uuid.uuid4())
    ticket = tickets.Ticket(ticket_id=ticket_id, customer_id=customer_id,
                            subject=f"Question {n}", body="Where is my order? " * 5,
                            channel="email", kind="question", received_at=datetime.now(UTC))
    event = envelope.Event(type="ticket.received", source="/bench", ticket_id=ticket_id,
                           correlation_id=ticket_id, data=ticket.model_dump(mode="json"))
    return envelope.to_value(event), envelope.to_headers(event)


class Load:
    """Tickets to the segmenter's topic and the bare stage's, the same to both."""

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self.producer = producer
        self.sent = 0

    async def send(self, customer_id: str) -> None:
        value, headers = record(customer_id, self.sent)
        key = customer_id.encode()
        await self.producer.send(topics.INCOMING, value, key=key, headers=headers)
        await self.producer.send(baseline.INCOMING, value, key=key)
        self.sent += 1


def popularity(customers: int, zipf: float, unknown: float, seed: int = 3
               ) -> Iterator[str]:
    """Customer ids, endlessly: Zipf-like ranks shuffled over the base, some unknown."""
    rng = random.Random(seed)
    weights = list(itertools.accumulate(1 / rank ** zipf for rank in range(1, customers + 1)))
    stride = 7919  # a prime not dividing the base: rank -> customer is one to one
    while True:
        if rng.random() < unknown:
            yield f"new-{rng.randrange(10**9):09d}"
        else:
            rank = rng.choices(range(customers), cum_weights=weights)[0]
            yield customer_base.customer_id(rank * stride % customers)


async def committed(admin: AIOKafkaAdminClient, group: str, topic: str) -> int:
    offsets = await admin.list_consumer_group_offsets(group)
    return sum(meta.offset for tp, meta in offsets.items() if tp.topic == topic and meta)


async def drive(bootstrap: str, args: argparse.Namespace, rss: RssTimeline) -> dict[str, float]:
    settings = Settings()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await producer.start()
    await admin.start()
    load = Load(producer)
    figures: dict[str, float] = {}

    async def drained(what: str) -> None:
        deadline = time.monotonic() + args.drain_timeout
        while time.monotonic() < deadline:
            done = await committed(admin, topics.SEGMENTER_GROUP, topics.INCOMING)
            if done >= load.sent:
                break
            await asyncio.sleep(1)
        figures[f"segmenter committed after {what}"] = done
        figures[f"tickets sent by the end of {what}"] = load.sent

    try:
        rss.phase = "fill"
        began = time.monotonic()
        stride = 104_729
        for n in range(args.fill):
            await load.send(customer_base.customer_id(n * stride % args.customers))
        await producer.flush()
        await drained("fill")
        figures["fill seconds"] = time.monotonic() - began
        rss.phase = "load"
        cache: TTLCache[str, bool] = TTLCache(settings.customer_cache_size,
                                              settings.customer_cache_ttl_seconds)
        hits = 0
        stream = popularity(args.customers, args.zipf, args.unknown)
        began = time.monotonic()
        load_sent = 0
        while (elapsed := time.monotonic() - began) < args.seconds:
            while load_sent < elapsed * args.rate:
                customer_id = next(stream)
                hits += customer_id in cache
                cache[customer_id] = True
                await load.send(customer_id)
                load_sent += 1
            await asyncio.sleep(0.01)
        await producer.flush()
        figures["load tickets"] = load_sent
        figures["offered rate, tickets/s"] = load_sent / args.seconds
        figures["stated cache hit ratio"] = hits / max(1, load_sent)
        rss.phase = "drain"
        await drained("load")
    finally:
        await admin.close()
        await producer.stop()
    return figures
