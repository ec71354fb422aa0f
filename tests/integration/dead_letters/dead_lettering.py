"""Dead letters made as a stage makes them, and a topic read back from the start."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord

from services.core import db, dead_letter_reading, envelope, faults, migrate, topics
from services.core.settings import Settings
from services.router import held_follower
from services.router.held_store import HeldTickets
from services.router.held_tickets import Held
from tests.conftest import unique

Headers = list[tuple[str, bytes]]


def original_headers(ticket_id: str) -> Headers:
    event = envelope.Event(type="ticket.segmented", source="/test", ticket_id=ticket_id,
                           correlation_id=ticket_id, data={})
    return [*envelope.to_headers(event), ("x-platform", b"helpdesk")]


async def dead_letter(producer: AIOKafkaProducer, source_topic: str, *, key: bytes,
                      value: bytes, headers: Headers, error_class: str = "EnvelopeError",
                      source_offset: int = 0, stage: str = "") -> str:
    """Dead-letter a record as a stage does (`faults.dead_letter_headers`); its id."""
    record: ConsumerRecord[bytes, bytes] = ConsumerRecord(
        topic=source_topic, partition=0, offset=source_offset, timestamp=0, timestamp_type=0,
        key=key, value=value, checksum=None, serialized_key_size=len(key),
        serialized_value_size=len(value), headers=headers)
    metadata = await producer.send_and_wait(
        topics.DEAD_LETTERS, value, key=key,
        headers=faults.dead_letter_headers(record, "value is not JSON", error_class, stage))
    return dead_letter_reading.dead_letter_id(metadata.partition, metadata.offset)


async def some_dead_letters(producer: AIOKafkaProducer, source_topic: str,
                            count: int, **options: Any) -> dict[str, tuple[bytes, bytes, Headers]]:
    """`count` dead letters of `source_topic`: id -> (key, value, original headers)."""
    made = {}
    for n in range(count):
        ticket_id = unique("t")
        key, value = f"cust-{n}".encode(), f'{{"n": {n}}}'.encode()
        headers = original_headers(ticket_id)
        made[await dead_letter(producer, source_topic, key=key, value=value, headers=headers,
                               source_offset=n, **options)] = (key, value, headers)
    return made


async def read_all(bootstrap: str, topic: str, *, until: int, within: float = 20.0,
                   settle: float = 1.5) -> list[Any]:
    """Every record of a topic, read from the start by a fresh read_committed consumer,
    until `until` records came and `settle` more seconds brought no more (so duplicates
    show), or `within` seconds passed."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=unique("check"),
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                isolation_level="read_committed")
    await consumer.start()
    found: list[Any] = []
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while loop.time() < deadline:
            if len(found) >= until:
                deadline = min(deadline, loop.time() + settle)
            for records in (await consumer.getmany(timeout_ms=200)).values():
                found.extend(records)
    finally:
        await consumer.stop()
    return found


async def held_by_the_reader(settings: Settings, ticket_id: str | None,
                             **options: Any) -> Held:
    """The ticket as the router's reader of the dead letters holds it (its store migrated
    here, its group the test's own; `options`: held_follower.follow's)."""
    assert ticket_id is not None
    await migrate.upgrade(settings.database_url)
    engine = db.engine(settings.database_url)
    stop = asyncio.Event()
    held = HeldTickets(db.sessions(engine))
    reader = asyncio.create_task(held_follower.follow(
        settings, held, stop, **{"group_id": unique("held"), **options}))
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        found = await held.get(ticket_id)
        while found is None and loop.time() < deadline:
            await asyncio.sleep(0.1)
            found = await held.get(ticket_id)
    finally:
        stop.set()
        await reader
        await engine.dispose()
    assert found is not None, "the reader never held the ticket"
    return found
