"""Dead letters as records: their ids, how they are selected, described and replayed.
Pure: no Kafka client here (`dead_letters` reads and writes the topics)."""

from __future__ import annotations

import base64
import string
from collections.abc import Collection, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

from services.core import dead_letter_reading, topics

REPLAY_HEADER = topics.DLQ_REPLAYED_FROM
MAX_LIMIT = 1000


class InvalidSelection(ValueError):
    """A selection that names no dead letters clearly: `field` says which part is wrong
    (an id by its place in `ids`, from 0: `ids.1`) and `problem` what, both in the
    selection's own field names, which the HTTP API's are; `field_in` and `problem_in`
    say them in another interface's names (the command line's options)."""

    def __init__(self, name: str, problem: str, *, index: int | None = None) -> None:
        """`problem` names the selection's fields as `${ids}`, `${source_topic}`, ...;
        `index` is the place of the id refused."""
        self.name, self.index, self._problem = name, index, string.Template(problem)
        self.field = name if index is None else f"{name}.{index}"
        self.problem = self.problem_in(_FIELDS)
        super().__init__(f"{self.field}: {self.problem}")

    def field_in(self, names: Mapping[str, str]) -> str:
        """`field` in another interface's names (keyed by the selection's), an id by its
        place from 1."""
        return names[self.name] + ("" if self.index is None else f" (number {self.index + 1})")

    def problem_in(self, names: Mapping[str, str]) -> str:
        """`problem` in another interface's names (keyed by the selection's)."""
        return self._problem.safe_substitute(names)


@dataclass(frozen=True)
class Selection:
    """Which dead letters to replay: explicit ids, or every one the filters match (up to
    `limit` not yet replayed; repeat the request for more)."""

    ids: tuple[str, ...] = ()
    source_topic: str | None = None
    error_class: str | None = None
    limit: int = MAX_LIMIT

    def __post_init__(self) -> None:
        filtered = self.source_topic is not None or self.error_class is not None
        if bool(self.ids) == filtered:
            raise InvalidSelection("ids", "give either ${ids} or a filter (${source_topic},"
                                          " ${error_class}), not both and not neither")
        for index, text in enumerate(self.ids):
            if not dead_letter_reading.ID.fullmatch(text):
                raise InvalidSelection("ids", f"should be {dead_letter_reading.ID.words}",
                                       index=index)
        if not 1 <= self.limit <= MAX_LIMIT:
            raise InvalidSelection("limit", f"must be between 1 and {MAX_LIMIT}")


# A selection's fields by their own names: how InvalidSelection's `problem` names them.
_FIELDS = {each.name: each.name for each in fields(Selection)}


@dataclass
class ReplayResult:
    replayed: list[str] = field(default_factory=list)
    skipped_already_replayed: list[str] = field(default_factory=list)
    not_found: list[str] = field(default_factory=list)
    # No source topic a stage reads in its headers, that topic gone (not described even
    # when looked at again: `new_topics`), or not readable.
    unreplayable: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {outcome: len(ids) for outcome, ids in asdict(self).items()}


def matches(record: dead_letter_reading.Record, *, source_topic: str | None,
            error_class: str | None) -> bool:
    found = dead_letter_reading.header_values(record.headers)
    return ((source_topic is None or found.get(topics.DLQ_SOURCE_TOPIC) == source_topic)
            and (error_class is None or found.get(topics.DLQ_ERROR_CLASS) == error_class))


def describe(record: dead_letter_reading.Record, *, include_value: bool = False) -> dict[str, Any]:
    """A dead letter for people and tools; the value only on request (personal data)."""
    found = dead_letter_reading.header_values(record.headers)
    described: dict[str, Any] = {
        "id": dead_letter_reading.dead_letter_id(record.partition, record.offset),
        "partition": record.partition,
        "offset": record.offset,
        "timestamp": datetime.fromtimestamp(record.timestamp / 1000, UTC).isoformat(),
        "source_topic": found.get(topics.DLQ_SOURCE_TOPIC),
        "source_partition": _number(found.get(topics.DLQ_SOURCE_PARTITION)),
        "source_offset": _number(found.get(topics.DLQ_SOURCE_OFFSET)),
        "error": found.get(topics.DLQ_ERROR),
        "error_class": found.get(topics.DLQ_ERROR_CLASS),
        # The stage that could not process it: a record on `tickets.events` that each of
        # its followers refused is three dead letters, one a stage.
        "stage": found.get(topics.DLQ_STAGE),
        "event_type": found.get("ce_type"),
        "ticket_id": found.get("ce_ticketid"),
        "replayed_from": found.get(REPLAY_HEADER),
        **_encoded("key", record.key),
    }
    if include_value:
        described |= _encoded("value", record.value)
    return described


# The error class of a record the Kafka client cannot read (a header name that is not
# UTF-8, a batch failing its checksum), as the stages dead-letter such a record
# (faults.Unreadable's name), and as the listing names one found on the dead-letter
# topic itself: listed, with where it stands, and never replayed (nothing of it can be
# read).
UNREADABLE = "Unreadable"


def describe_unreadable(partition: int, offset: int, problem: str, *,
                        include_value: bool = False) -> dict[str, Any]:
    """A dead letter the Kafka client cannot read, described as far as it is known: in
    `describe`'s shape, what cannot be read of it none."""
    known = {"id": dead_letter_reading.dead_letter_id(partition, offset), "partition": partition,
             "offset": offset, "error": problem, "error_class": UNREADABLE}
    shape = ["timestamp", "source_topic", "source_partition", "source_offset", "stage",
             "event_type", "ticket_id", "replayed_from", "key", "key_encoding",
             *(["value", "value_encoding"] if include_value else [])]
    return {**known, **dict.fromkeys(shape)}


def replayable(source: str | None, existing: Collection[str]) -> bool:
    """Whether a dead letter naming `source` may be written back there: to a stage's
    input that exists, whatever else a dead letter names (topics.STAGE_INPUTS)."""
    return source in topics.STAGE_INPUTS and source in existing


def worth_describing_again(source: str | None, existing: Collection[str]) -> bool:
    """Whether a dead letter unreplayable only for want of its source among `existing`
    may yet be replayable: it names a stage's input the cluster's description lacks, as
    it lacks a topic made a moment ago until the brokers' metadata shows it."""
    return source in topics.STAGE_INPUTS and source not in existing


def replay_headers(headers: Sequence[tuple[str, bytes]], replayed_from: str) -> list[
        tuple[str, bytes]]:
    """The original headers without the dead-letter ones, and where the replay came from."""
    kept = ((name, raw) for name, raw in headers
            if not name.startswith(topics.DEAD_LETTER_HEADER_PREFIX))
    return [*kept,
            (REPLAY_HEADER, replayed_from.encode())]


def resume_points(partitions: Collection[int], after: tuple[int, int] | None) -> dict[int, int]:
    """Where each partition is read from so that only dead letters after `after` come,
    in (partition, offset) order."""
    if after is None:
        return dict.fromkeys(sorted(partitions), 0)
    last_partition, last_offset = after
    return {partition: last_offset + 1 if partition == last_partition else 0
            for partition in sorted(partitions) if partition >= last_partition}


def _number(text: str | None) -> int | None:
    return int(text) if text is not None and text.isdigit() else None


def _encoded(name: str, raw: bytes | None) -> dict[str, str | None]:
    if raw is None:
        return {name: None, f"{name}_encoding": None}
    try:
        return {name: raw.decode("utf-8"), f"{name}_encoding": "utf-8"}
    except UnicodeDecodeError:
        return {name: base64.b64encode(raw).decode("ascii"), f"{name}_encoding": "base64"}
