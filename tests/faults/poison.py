"""Poison records of every kind the dead-letter path knows, and reading them back from
the dead-letter topic."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord

from services.core import envelope, events, topics
from tests.conftest import unique

Headers = list[tuple[str, bytes]]


@dataclass(frozen=True)
class Poison:
    kind: str
    topic: str
    headers: Headers
    value: bytes | None
    reason: str  # a part of the dlq_error the stage must give
    error_class: str

    def key(self, prefix: str) -> bytes:
        return f"{prefix}:{self.topic}:{self.kind}".encode()


def _replaced(headers: Headers, name: str, value: bytes) -> Headers:
    return [(key, value if key == name else raw) for key, raw in headers]


def poisons(topic: str, *, subject: str) -> list[Poison]:
    """Every kind of unreadable record for one of the stages' source topics."""
    ticket: dict[str, Any] = {
        "ticket_id": unique("poison"), "customer_id": "ind-vip-1", "subject": subject,
        "body": "poison", "channel": "api", "received_at": datetime.now(UTC).isoformat()}
    if topic == topics.SEGMENTED:
        # A complete received ticket: what the router stage lacks is the segmentation.
        kind, missing = events.TicketEventType.SEGMENTED, "segmentation"
        incomplete = ticket
    else:
        kind, missing = events.TicketEventType.RECEIVED, "customer_id"
        incomplete = {name: value for name, value in ticket.items() if name != missing}
    event = envelope.Event(type=kind, source="/tests/faults", ticket_id=ticket["ticket_id"],
                           correlation_id=ticket["ticket_id"], data=ticket)
    headers, value = envelope.to_headers(event), envelope.to_value(event)
    unreadable = "EnvelopeError"
    return [
        Poison("not JSON", topic, headers, b"{not json", "not JSON", unreadable),
        Poison("not a JSON object", topic, headers, b"[1, 2]", "not a JSON object",
               unreadable),
        Poison("no value", topic, headers, None, "no value", unreadable),
        Poison("no CloudEvents headers", topic, [], value, "missing CloudEvents headers",
               unreadable),
        Poison("unknown ce_specversion", topic, _replaced(headers, "ce_specversion", b"0.3"),
               value, "ce_specversion", unreadable),
        Poison("unknown schema version", topic,
               _replaced(headers, "ce_schemaversion", b"99"), value,
               "unknown schema version", unreadable),
        Poison("bad ce_time", topic, _replaced(headers, "ce_time", b"yesterday"), value,
               "ce_time", unreadable),
        Poison("missing required fields", topic, headers,
               envelope.to_value(envelope.Event(
                   type=kind, source=event.source, ticket_id=event.ticket_id,
                   correlation_id=event.correlation_id, data=incomplete)),
               missing, "ValidationError"),
    ]


async def produce(bootstrap: str, prefix: str,
                  records: list[Poison]) -> dict[bytes, tuple[Poison, int, int]]:
    """Produce the records straight to their topics; key -> (poison, partition, offset)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all",
                                enable_idempotence=True)
    await producer.start()
    produced: dict[bytes, tuple[Poison, int, int]] = {}
    try:
        for poison in records:
            metadata = await producer.send_and_wait(poison.topic, poison.value,
                                                    key=poison.key(prefix),
                                                    headers=poison.headers)
            produced[poison.key(prefix)] = (poison, metadata.partition, metadata.offset)
    finally:
        await producer.stop()
    return produced


async def read_dead_letters(bootstrap: str, wanted: Callable[[ConsumerRecord], bool], *,
                            until: int, within: float = 60.0,
                            settle: float = 1.0) -> list[ConsumerRecord]:
    """The dead letters (read_committed, from the start) that `wanted` picks: until
    `until` are found and `settle` more seconds bring no more, or `within` seconds."""
    consumer = AIOKafkaConsumer(topics.DEAD_LETTERS, bootstrap_servers=bootstrap,
                                group_id=unique("dlq-reader"), auto_offset_reset="earliest",
                                enable_auto_commit=False, isolation_level="read_committed")
    found: list[ConsumerRecord] = []
    loop = asyncio.get_running_loop()
    try:
        await consumer.start()
        deadline = loop.time() + within
        while loop.time() < deadline:
            if len(found) >= until:
                deadline = min(deadline, loop.time() + settle)
            batch = await consumer.getmany(timeout_ms=200)
            found += [record for records in batch.values() for record in records
                      if wanted(record)]
    finally:
        await consumer.stop()
    return found
