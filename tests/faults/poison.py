"""Poison of every class a stage must survive, written straight to the pipeline's topics
(as a department's Kafka user or a careless client could), and odd tickets posted over
HTTP (as a platform with a key could); reading the dead letters back."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord

from services.core import envelope, events, topics
from tests.conftest import unique

Headers = list[tuple[str, Any]]

# The stages that read each topic, by the names they dead-letter under (their groups).
READERS = {topics.INCOMING: {topics.SEGMENTER_GROUP}, topics.SEGMENTED: {topics.ROUTER_GROUP},
           topics.EVENTS: {topics.METRICS_GROUP, topics.ROUTER_TRACKER_GROUP}}
# Those that read every record's envelope: the webhook outbox reads a lifecycle event's
# data only once some platform has registered an endpoint (none does in the fault tests),
# so it dead-letters an unreadable envelope and passes a broken report by.
ENVELOPE_READERS = {**READERS, topics.EVENTS: {*READERS[topics.EVENTS],
                                               topics.ROUTER_WEBHOOKS_GROUP}}


@dataclass(frozen=True)
class Poison:
    kind: str
    topic: str
    headers: Headers
    value: bytes | None
    reason: str  # a part of the dlq_error each stage must give
    error_class: str
    stages: frozenset[str] = frozenset()  # who dead-letters it (default: every reader)

    def key(self, prefix: str) -> bytes:
        return f"{prefix}:{self.topic}:{self.kind}".encode()

    @property
    def readers(self) -> frozenset[str]:
        return self.stages or frozenset(READERS[self.topic])


def _replaced(headers: Headers, name: str, value: bytes | None) -> Headers:
    return [(key, value if key == name else raw) for key, raw in headers]


def _record(event: envelope.Event) -> tuple[Headers, bytes]:
    return list(envelope.to_headers(event)), envelope.to_value(event)


def envelope_poisons(topic: str, kind: str, data: dict[str, Any]) -> list[Poison]:
    """Records that are not CloudEvents a stage can read."""
    ticket_id = str(data["ticket_id"])
    event = envelope.Event(type=kind, source="/tests/faults", ticket_id=ticket_id,
                           correlation_id=ticket_id, data=data)
    headers, value = _record(event)
    unreadable = "EnvelopeError"
    return [replace(poison, stages=frozenset(ENVELOPE_READERS[topic])) for poison in [
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
        Poison("ce_time without offset", topic,
               _replaced(headers, "ce_time", b"2026-11-30T09:00:00"), value,
               "not an RFC 3339 timestamp with offset", unreadable),
        Poison("header without a value", topic, _replaced(headers, "ce_type", None), value,
               "has no value", unreadable),
        Poison("header not UTF-8", topic, _replaced(headers, "ce_source", b"\xff\xfe"),
               value, "not UTF-8", unreadable),
        Poison("ce_id longer than any id", topic, _replaced(headers, "ce_id", b"i" * 300),
               value, "ce_id must be", unreadable),
    ]]


def _ticket(subject: str) -> dict[str, Any]:
    return {"ticket_id": unique("poison"), "customer_id": "ind-vip-1", "subject": subject,
            "body": "poison", "channel": "api", "received_at": datetime.now(UTC).isoformat()}


def _data_poison(kind: str, topic: str, event_type: str, data: dict[str, Any], reason: str,
                 *, source: str = "/tests/faults", error_class: str = "ValidationError",
                 stages: frozenset[str] = frozenset()) -> Poison:
    ticket_id = str(data.get("ticket_id", unique("poison")))
    headers, value = _record(envelope.Event(type=event_type, source=source,
                                            ticket_id=ticket_id, correlation_id=ticket_id,
                                            data=data))
    return Poison(kind, topic, headers, value, reason, error_class, stages)


def ticket_poisons(topic: str, *, subject: str) -> list[Poison]:
    """Readable envelopes whose ticket breaks the contract the stage reads by."""
    received = events.TicketEventType.RECEIVED
    segmented = events.TicketEventType.SEGMENTED
    if topic == topics.INCOMING:
        base = _ticket(subject)
        return [
            _data_poison("missing required fields", topic, received,
                         {k: v for k, v in base.items() if k != "customer_id"}, "customer_id"),
            _data_poison("customer id longer than the column", topic, received,
                         {**base, "customer_id": "c" * 300}, "customer_id"),
            _data_poison("NUL in the subject", topic, received,
                         {**base, "subject": f"{subject} \x00"}, "NUL"),
            _data_poison("received_at without offset", topic, received,
                         {**base, "received_at": "2026-11-30T09:00:00"}, "received_at"),
            _data_poison("attribute text too long", topic, received,
                         {**base, "attributes": {"note": "x" * 5000}},
                         # an attribute's name is the writer's: told by its length
                         "attributes.(an unknown name: 4 characters, not shown)"),
        ]
    base = {**_ticket(subject), "segmentation": {
        "segment": "vip", "rule": "r", "rules_version": "v", "customer_known": True,
        "tier": "existing"}}
    return [
        _data_poison("missing segmentation", topic, segmented,
                     {k: v for k, v in base.items() if k != "segmentation"}, "segmentation"),
        _data_poison("segment name longer than the column", topic, segmented,
                     {**base, "segmentation": {**base["segmentation"], "segment": "s" * 100}},
                     "segmentation.segment"),
    ]


def lifecycle_poisons(ticket_id: str) -> list[Poison]:
    """Lifecycle events that break the contract, or that the pipeline did not write:
    `ticket_id` is a real ticket, whose response a forger would like to fake."""
    now = datetime.now(UTC).isoformat()
    routed, responded = events.TicketEventType.ROUTED, events.TicketEventType.RESPONDED
    metrics_only = frozenset({"metrics"})  # the router's tracker follows reports only

    def data(kind: str, **fields: Any) -> dict[str, Any]:
        return {"ticket_id": ticket_id, "type": kind, "occurred_at": now, **fields}

    topic = topics.EVENTS
    return [
        _data_poison("department name longer than the column", topic, routed,
                     data(routed, department="d" * 200, segment="vip"), "department",
                     source=events.ROUTER_SOURCE, stages=metrics_only),
        _data_poison("report time without offset", topic, responded,
                     {**data(responded), "occurred_at": "2026-11-30T09:00:00"},
                     "occurred_at", source=events.INTAKE_SOURCE),
        _data_poison("forged response report", topic, responded,
                     data(responded, department="public_sector"),
                     "written by /services/router/intake only",
                     source="/departments/public_sector", error_class="UntrustedEvent"),
        _data_poison("unknown event type", topic, "ticket.vanished",
                     data("ticket.vanished"), "unknown lifecycle event type",
                     source=events.ROUTER_SOURCE, error_class="UntrustedEvent",
                     stages=metrics_only),
    ]


def all_poisons(subject: str, real_ticket_id: str) -> list[Poison]:
    fake = _ticket(subject)
    return [
        *envelope_poisons(topics.INCOMING, events.TicketEventType.RECEIVED, fake),
        *envelope_poisons(topics.SEGMENTED, events.TicketEventType.SEGMENTED, fake),
        *envelope_poisons(topics.EVENTS, events.TicketEventType.RESPONDED,
                          {"ticket_id": fake["ticket_id"], "type": "ticket.responded",
                           "occurred_at": fake["received_at"]}),
        *ticket_poisons(topics.INCOMING, subject=subject),
        *ticket_poisons(topics.SEGMENTED, subject=subject),
        *lifecycle_poisons(real_ticket_id),
    ]


@dataclass(frozen=True)
class OddTicket:
    """A request a platform might send: refused alone, with this status and field."""

    kind: str
    body: bytes
    status: int
    field: str | None  # the field the 422 names


def odd_tickets(subject: str) -> list[OddTicket]:
    def ticket(extra: str, *, with_subject: bool = True) -> bytes:
        subject_field = f'"subject": "{subject}", ' if with_subject else ""
        return ('{"customer_id": "ind-vip-1", "body": "b", "channel": "api", '
                f"{subject_field}{extra}}}").encode()

    many = ", ".join(f'"a{n}": {n}' for n in range(51))
    return [
        OddTicket("integer past 64 bits", ticket('"attributes": {"n": 1' + "0" * 30 + "}"),
                  422, "body.attributes.n"),
        OddTicket("NaN", ticket('"attributes": {"n": NaN}'), 422, "body.attributes.n"),
        OddTicket("infinity", ticket('"attributes": {"n": -1e999}'), 422,
                  "body.attributes.n"),
        OddTicket("lone surrogate in an attribute", ticket('"attributes": {"s": "\\ud800"}'),
                  422, "body.attributes.s"),
        OddTicket("lone surrogate in the subject",
                  ticket(f'"subject": "{subject} \\udfff"', with_subject=False), 422,
                  "body.subject"),
        OddTicket("NUL in the body", ticket('"kind": "other"').replace(
            b'"body": "b"', b'"body": "b\\u0000"'), 422, "body.body"),
        OddTicket("attribute text too long",
                  ticket('"attributes": {"note": "' + "x" * 1001 + '"}'), 422,
                  "body.attributes.note"),
        OddTicket("51 attributes", ticket('"attributes": {' + many + "}"), 422,
                  "body.attributes"),
        OddTicket("body too long", ticket('"kind": "other"').replace(
            b'"body": "b"', b'"body": "' + b"x" * 50_001 + b'"'), 422, "body.body"),
        OddTicket("request over 1 MiB", ticket('"kind": "other"').replace(
            b'"body": "b"', b'"body": "' + b"x" * (1 << 20) + b'"'), 413, None),
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
