"""CloudEvents over Kafka, binary content mode.

Every record on our topics carries its CloudEvents attributes as `ce_*` headers and its
data as a JSON value, so that any Kafka client (kcat included) can read it. The ticket id
and the correlation id travel as the extension attributes `ticketid` and `correlationid`.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

SPEC_VERSION = "1.0"
CONTENT_TYPE = "application/json"
SCHEMA_VERSION = "1"

Headers = list[tuple[str, bytes]]


class EnvelopeError(ValueError):
    """A record that is not a CloudEvent we can read."""


@dataclass(frozen=True)
class Event:
    type: str
    source: str
    ticket_id: str | None  # None for events about customers rather than tickets
    correlation_id: str
    data: Mapping[str, Any]
    subject: str | None = None  # defaults to the ticket id
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    time: datetime = field(default_factory=lambda: datetime.now(UTC))
    schema_version: str = SCHEMA_VERSION


def to_headers(event: Event) -> Headers:
    headers = [
        ("ce_specversion", SPEC_VERSION.encode()),
        ("ce_id", event.id.encode()),
        ("ce_source", event.source.encode()),
        ("ce_type", event.type.encode()),
        ("ce_time", event.time.isoformat().encode()),
    ]
    subject = event.subject or event.ticket_id
    if subject:
        headers.append(("ce_subject", subject.encode()))
    if event.ticket_id:
        headers.append(("ce_ticketid", event.ticket_id.encode()))
    return [
        *headers,
        ("ce_correlationid", event.correlation_id.encode()),
        ("ce_schemaversion", event.schema_version.encode()),
        ("content-type", CONTENT_TYPE.encode()),
    ]


def to_value(event: Event) -> bytes:
    return orjson.dumps(event.data, default=str)


def from_record(headers: Sequence[tuple[str, bytes]] | None, value: bytes | None) -> Event:
    """Read a record written by `to_headers`/`to_value`; raise EnvelopeError otherwise."""
    attributes = {key: raw.decode("utf-8", "replace") for key, raw in headers or ()}
    missing = [name for name in ("ce_id", "ce_type", "ce_source") if name not in attributes]
    if missing:
        raise EnvelopeError(f"missing CloudEvents headers: {', '.join(missing)}")
    if attributes.get("ce_specversion") != SPEC_VERSION:
        raise EnvelopeError(f"unsupported ce_specversion {attributes.get('ce_specversion')!r}")
    schema_version = attributes.get("ce_schemaversion", SCHEMA_VERSION)
    if schema_version != SCHEMA_VERSION:
        raise EnvelopeError(f"unknown schema version {schema_version!r}")
    if value is None:
        raise EnvelopeError("record has no value")
    try:
        data = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise EnvelopeError(f"value is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise EnvelopeError("value is not a JSON object")
    try:
        time = datetime.fromisoformat(attributes["ce_time"])
    except (KeyError, ValueError) as exc:
        raise EnvelopeError("ce_time is missing or not an RFC 3339 time") from exc
    ticket_id = attributes.get("ce_ticketid")
    return Event(
        type=attributes["ce_type"],
        source=attributes["ce_source"],
        ticket_id=ticket_id,
        correlation_id=attributes.get("ce_correlationid", attributes["ce_id"]),
        data=data,
        subject=None if attributes.get("ce_subject") == ticket_id else attributes.get("ce_subject"),
        id=attributes["ce_id"],
        time=time,
        schema_version=schema_version,
    )
