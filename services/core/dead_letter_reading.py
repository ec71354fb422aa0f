"""What every reader of the dead letters agrees on: a dead letter's id, its headers by
name, the platform that posted the ticket it holds, and whether it was replayed. The
router's listing, replay and held tickets and the metrics service's count of the dead
letters waiting read them alike. Pure: no Kafka client here.

A replay writes a marker keyed by the dead letter's id to the compacted topic
`tickets.dlq.replayed` (topics.DEAD_LETTERS_REPLAYED), in the transaction that writes the
dead letter back: a dead letter is replayed exactly when its latest marker has a value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

import orjson

from services.core import access, text_forms, topics

# A dead letter's id: partition:offset, in ASCII digits ([0-9], as JSON Schema means `\d`).
ID = text_forms.Form(r"^[0-9]{1,9}:[0-9]{1,19}$", "a dead letter's id as its list gives it:"
                     " its partition and offset, in digits, joined by ':' (such as 0:42)")


def dead_letter_id(partition: int, offset: int) -> str:
    return f"{partition}:{offset}"


def parse_id(text: str) -> tuple[int, int]:
    if not ID.fullmatch(text):
        raise ValueError(f"should be {ID.words}")
    partition, offset = text.split(":")
    return int(partition), int(offset)


def header_values(headers: Sequence[tuple[str, bytes]] | None) -> dict[str, str]:
    """Headers by name; the last wins, as the pipeline appends its dlq_* headers last."""
    return {name: raw.decode("utf-8", "replace") for name, raw in headers or ()}


def platform(headers: Mapping[str, str], value: bytes | None) -> str | None:
    """The platform that posted the ticket a dead letter holds (`headers`: by name): as
    its value says, or, its value dropped (too large to keep whole), as the header the
    stage kept for it says (topics.DLQ_PLATFORM); None where neither says a credential's
    subject."""
    if topics.DLQ_VALUE_DROPPED in headers:
        return _subject(headers.get(topics.DLQ_PLATFORM))
    return platform_of(value)


def platform_of(value: bytes | None) -> str | None:
    """The platform a record's value names (a ticket's `platform`, on `tickets.incoming`
    and `tickets.segmented` alike), where it is a credential's subject (access.SUBJECT:
    a name, bounded, never personal data); None where it cannot be read."""
    try:
        data = orjson.loads(value or b"")
    except orjson.JSONDecodeError:
        return None
    return _subject(data.get("platform") if isinstance(data, dict) else None)


def _subject(found: object) -> str | None:
    return found if isinstance(found, str) and access.SUBJECT.fullmatch(found) else None


class Record(Protocol):
    """What is read of a dead letter (an aiokafka `ConsumerRecord` is one)."""

    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def timestamp(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Sequence[tuple[str, bytes]]: ...


class Marker(Protocol):
    """What is read of a replay marker (an aiokafka `ConsumerRecord` is one)."""

    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...


class Replayed:
    """The ids of the dead letters replayed, as the markers read so far say: an id's
    latest marker wins, and a tombstone (no value) withdraws it, so the dead letter is
    replayable again. A marker whose key is no dead letter's id (none: one the Kafka
    client could not read) marks nothing."""

    def __init__(self) -> None:
        self._ids: set[str] = set()

    def read(self, marker: Marker) -> None:
        key = (marker.key or b"").decode("utf-8", "replace")
        if not ID.fullmatch(key):
            return
        if marker.value is None:
            self._ids.discard(key)
        else:
            self._ids.add(key)

    def __contains__(self, dead_letter_id: object) -> bool:
        return dead_letter_id in self._ids
