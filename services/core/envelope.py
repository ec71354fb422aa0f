"""CloudEvents over Kafka, binary content mode.

Every record on our topics carries its CloudEvents attributes as `ce_*` headers and its
data as a JSON value, so that any Kafka client (kcat included) can read it. The ticket id
and the correlation id travel as the extension attributes `ticketid` and `correlationid`.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from services.core import identifiers, moments, topics, unicode_errors

SPEC_VERSION = "1.0"
CONTENT_TYPE = "application/json"
SCHEMA_VERSION = "1"

Headers = list[tuple[str, bytes]]

# The names of the headers a record of ours carries: the CloudEvents attributes and the
# content type the envelope writes (`to_headers`), and what the pipeline adds to a dead
# letter and its replay (`topics.DLQ_*`). The only header names an error quotes
# (`_shown_name`): any other name is the sender's choice, may be personal data
# (`jane.doe`), and is told by its length and position alone.
HEADER_NAMES = frozenset({
    "ce_specversion", "ce_id", "ce_source", "ce_type", "ce_time", "ce_subject",
    "ce_ticketid", "ce_correlationid", "ce_schemaversion", "content-type",
    topics.DLQ_SOURCE_TOPIC, topics.DLQ_SOURCE_PARTITION, topics.DLQ_SOURCE_OFFSET,
    topics.DLQ_ERROR, topics.DLQ_ERROR_CLASS, topics.DLQ_STAGE, topics.DLQ_VALUE_DROPPED,
    topics.DLQ_PLATFORM, topics.DLQ_REPLAYED_FROM})

# The largest record the pipeline writes: the producers' request size (aiokafka's default
# max_request_size, 1 MiB) less room for the record batch's own overhead.
MAX_RECORD_BYTES = 1_000_000


class EnvelopeError(ValueError):
    """A record that is not a CloudEvent we can read."""


class Unserialisable(ValueError):
    """An event that cannot become a record: its data is not JSON, or it is too large."""


# The namespace of the ids derived from another event's (`derived_id`), and its bytes
# (which `uuid.uuid5` would make again for every id).
_DERIVED = uuid.UUID("6f1c7a52-3e0b-5d5e-9a57-8a1d3c2b4e10")
_DERIVED_BYTES = _DERIVED.bytes
# A UUID's variant digit (its 17th hex digit) for each digit of the hash there: RFC
# 4122's variant keeps the digit's low two bits and sets its top two to 10 (8, 9, a, b).
_VARIANT_DIGIT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}


def new_id() -> str:
    """A new event's id: a random UUID (version 4), as `str(uuid.uuid4())` writes it,
    from the same 16 random bytes, its version and variant digits set in place as
    `derived_id` sets them, without building a `uuid.UUID` (a third of the time; the
    segmenter makes two a ticket: README "Measured"; tests/unit/test_envelope.py)."""
    hexed = os.urandom(16).hex()
    return (f"{hexed[:8]}-{hexed[8:12]}-4{hexed[13:16]}"
            f"-{_VARIANT_DIGIT[hexed[16]]}{hexed[17:20]}-{hexed[20:32]}")


def derived_id(event_id: str, what: str) -> str:
    """The id of the `what` a stage writes from the event `event_id`: the same each time
    that event is read again (a batch replayed after a crash at least once, the same
    report published twice), so that readers keeping ids (a webhook callback's id is
    its event's) take it once. A name-based UUID (version 5) in the namespace _DERIVED:
    what `uuid.uuid5` makes, without its two conversions of the namespace a call (the
    router derives two ids a ticket), and written from the hash's hex digits, version
    and variant digits set in place, without building a `uuid.UUID` (half the time:
    README "Measured"; the same ids, tests/unit/test_envelope.py)."""
    hexed = hashlib.sha1(_DERIVED_BYTES + f"{event_id}/{what}".encode()).hexdigest()
    return (f"{hexed[:8]}-{hexed[8:12]}-5{hexed[13:16]}"
            f"-{_VARIANT_DIGIT[hexed[16]]}{hexed[17:20]}-{hexed[20:32]}")


@dataclass(frozen=True)
class Event:
    type: str
    source: str
    ticket_id: str | None  # None for events about customers rather than tickets
    correlation_id: str
    data: Mapping[str, Any]
    subject: str | None = None  # defaults to the ticket id
    id: str = field(default_factory=new_id)
    time: datetime = field(default_factory=lambda: datetime.now(UTC))
    schema_version: str = SCHEMA_VERSION
    # When it was written to Kafka (the record's timestamp, ms), for an event read from a
    # record; not part of the event itself. `time` is when it happened, as reported.
    recorded_ms: int | None = None

    @property
    def recorded_at(self) -> datetime | None:
        """`recorded_ms` as a moment, made only when asked (the webhook outbox asks)."""
        return None if self.recorded_ms is None else datetime.fromtimestamp(
            self.recorded_ms / 1000, UTC)


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
    try:
        return orjson.dumps(event.data, default=str)
    except orjson.JSONEncodeError as exc:  # a 65-bit integer, a lone surrogate...
        raise Unserialisable(f"the event's data cannot be written as JSON: {exc}") from exc


@dataclass(frozen=True)
class Record:
    """An event written out for Kafka: what a producer sends."""

    topic: str
    key: bytes
    value: bytes
    headers: Headers

    @functools.cached_property  # counted once: on encoding, and for its transaction
    def size(self) -> int:
        """Its size as a producer writes it in a record batch (Kafka's record format:
        each length a varint, so a record of many small headers is larger than its
        bytes; checked against aiokafka's own count in tests/unit/test_dead_letters.py).
        Counted here, not by importing the Kafka client, which readers of records that
        never touch Kafka (the simulator) do not load. Each length is a varint before its
        bytes: one byte under 64, more from 64 on (added so, the common case costs no
        call a length). A header's name is counted in UTF-8 bytes, encoded only when it
        is not ASCII (the envelope's never are; the same size: tests/unit/test_envelope.py)."""
        size = _varint_size(len(self.headers))
        for length in (len(self.key), len(self.value)):
            size += length + (1 if length < 64 else _varint_size(length))
        for name, raw in self.headers:
            name_bytes = len(name) if name.isascii() else len(name.encode())
            size += name_bytes + len(raw) + 2
            if name_bytes >= 64:
                size += _varint_size(name_bytes) - 1
            if len(raw) >= 64:
                size += _varint_size(len(raw)) - 1
        return size


def _varint_size(value: int) -> int:
    """Bytes of a non-negative int as Kafka's zigzag varint."""
    zigzag, size = value << 1, 1
    while zigzag >= 0x80:
        zigzag >>= 7
        size += 1
    return size


def encode(topic: str, key: str, event: Event, *,
           max_bytes: int = MAX_RECORD_BYTES) -> Record:
    """The record for an event; Unserialisable if it cannot be written or is over
    `max_bytes`, so that no producer (nor a transaction shared with others) fails on it."""
    try:
        record = Record(topic, key.encode(), to_value(event), to_headers(event))
    except UnicodeEncodeError as exc:
        raise Unserialisable("the event's key or attributes are not text: "
                             + unicode_errors.problem(exc)) from exc
    if record.size > max_bytes:
        raise Unserialisable(f"the record would be {record.size} bytes; at most {max_bytes}"
                             " are accepted")
    return record


# Bounds on the attributes we read: an id or name past them is not one of ours (and
# would not fit the stores' columns).
MAX_EVENT_ID = 64
MAX_CORRELATION_ID = 256
MAX_ATTRIBUTE = {"ce_id": MAX_EVENT_ID, "ce_ticketid": identifiers.MAX_LENGTH,
                  "ce_correlationid": MAX_CORRELATION_ID, "ce_subject": 256, "ce_type": 128,
                  "ce_source": 256}


def _attributes(headers: Sequence[tuple[str, bytes]] | None) -> dict[str, str]:
    """The record's headers as text; EnvelopeError for any header we cannot read."""
    attributes: dict[str, str] = {}
    position = 0
    try:
        for position, (key, raw) in enumerate(headers or (), start=1):
            if not isinstance(raw, bytes):
                raise EnvelopeError(f"header {_shown_name(key, position)} has no value")
            attributes[key] = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise EnvelopeError(f"header {_shown_name(key, position)} is not UTF-8 text") from exc
    except (TypeError, ValueError) as exc:  # not a list of (name, value) pairs
        if isinstance(exc, EnvelopeError):
            raise
        raise EnvelopeError("the record's headers are not (name, value) pairs") from exc
    for name, limit in MAX_ATTRIBUTE.items():
        if name in attributes and not 0 < len(attributes[name]) <= limit:
            raise EnvelopeError(f"{name} must be 1 to {limit} characters")
    return attributes


# A version header's value is quoted in an error (logs, dead-letter headers) only when it
# has the form of what is asked for there, a version number: anything else may carry
# personal data, and is told by its length.
_VERSION_NUMBER = re.compile(r"[0-9]{1,4}(?:\.[0-9]{1,4}){0,3}")


def _shown(value: str | None) -> str:
    """A version header's value as an error names it: quoted if a version number, else
    by its length."""
    if value is None:
        return "(missing)"
    if _VERSION_NUMBER.fullmatch(value):
        return repr(value)
    return f"(not a version number: {len(value)} characters, not shown)"


def _shown_name(name: object, position: int) -> str:
    """A header's name as an error names it: quoted if one of ours (HEADER_NAMES), else
    by its position among the record's headers (from 1) and its length."""
    if isinstance(name, str) and name in HEADER_NAMES:
        return repr(name)
    told = f"{len(name)} characters" if isinstance(name, str) else "not text"
    return f"#{position} (an unknown name: {told}, not shown)"


def type_of(headers: Sequence[tuple[str, bytes]] | None) -> str | None:
    """The record's `ce_type` as text, read from its headers alone (its value not parsed);
    None when it has none that can be read (then `from_record` says what is wrong). The
    last one counts where there are several, as in `from_record`."""
    kind = None
    try:
        for name, raw in headers or ():
            if name == "ce_type":
                kind = raw.decode("utf-8") if isinstance(raw, bytes) else None
    except (TypeError, ValueError):  # not (name, value) pairs, or not UTF-8
        return None
    return kind


def from_record(headers: Sequence[tuple[str, bytes]] | None, value: bytes | None, *,
                timestamp_ms: int | None = None) -> Event:
    """Read a record written by `to_headers`/`to_value` (with its timestamp, when given);
    raise EnvelopeError for any record that is not one (and nothing else)."""
    attributes = _attributes(headers)
    missing = [name for name in ("ce_id", "ce_type", "ce_source") if name not in attributes]
    if missing:
        raise EnvelopeError(f"missing CloudEvents headers: {', '.join(missing)}")
    if attributes.get("ce_specversion") != SPEC_VERSION:
        raise EnvelopeError(f"unsupported ce_specversion"
                            f" {_shown(attributes.get('ce_specversion'))}:"
                            f" only {SPEC_VERSION!r} is accepted")
    schema_version = attributes.get("ce_schemaversion", SCHEMA_VERSION)
    if schema_version != SCHEMA_VERSION:
        raise EnvelopeError(f"unknown schema version {_shown(schema_version)}"
                            f" (ce_schemaversion): only {SCHEMA_VERSION!r} is accepted")
    if value is None:
        raise EnvelopeError("record has no value")
    if not isinstance(value, bytes):
        raise EnvelopeError("record value is not bytes")
    try:
        data = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise EnvelopeError(f"value is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise EnvelopeError("value is not a JSON object")
    time = _time(attributes.get("ce_time"))
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
        recorded_ms=timestamp_ms,
    )


def _time(text: str | None) -> datetime:
    try:
        return moments.parse(text)
    except ValueError as exc:
        raise EnvelopeError(f"ce_time: {exc}") from exc
