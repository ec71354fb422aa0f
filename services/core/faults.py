"""What went wrong with a record, decided once for every stage.

- An **outage**: the broker or the database cannot be reached, or did not answer in
  time. Nothing is wrong with the record: the stage waits, with backoff, as long as the
  outage lasts.
- **Transient**: the record cannot be processed yet, for a reason that should pass (a
  report on a ticket whose state waits for the store; the store rolling a transaction
  back for a conflict with another, a deadlock). Retried a bounded number of times, then
  dead-lettered.
- Anything else is about **the record**: it cannot be decoded, validated, decided,
  serialised or stored. It is dead-lettered with its reason at once, and the stage goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import traceback
from collections.abc import Iterable
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import (
    CorruptRecordException,
    IllegalStateError,
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
)
from pydantic import ValidationError

from services.core import data_paths, db, dead_letter_reading, envelope, events, topics


class Fault(enum.Enum):
    OUTAGE = "outage"
    TRANSIENT = "transient"
    RECORD = "record"


class Transient(Exception):
    """A record that cannot be processed yet, for a reason expected to pass."""


class Unprocessable(Exception):
    """A record that no retry will fix: it goes to the dead-letter topic."""


# What the Kafka client raises while it reads a fetched record it cannot decode (a header
# name that is not UTF-8, a batch failing its checksum): every fetch of the partition
# meets it again, and takes down the records the fetch took from other partitions.
UNREADABLE = (UnicodeDecodeError, CorruptRecordException)
# How long a partition read a record at a time (after such a record) waits for its next
# record before it is taken to have none: longer than a fetch already on its way to the
# broker and the next one (KAFKA_FETCH_MAX_WAIT_MS, at most 500, each).
CAREFUL_WAIT_MS = 2000
# The most records a reader without a group reads of a partition a record at a time
# before it fetches as usual again (fetch_past_unreadable).
CAREFUL_RECORDS = 500


class Unreadable(envelope.EnvelopeError):
    """A record the Kafka client could not read at all (a header name that is not UTF-8,
    a batch failing its checksum): only where it stands is known."""


@dataclass
class UnreadableRecord(ConsumerRecord[bytes, bytes]):  # type: ignore[misc]
    """Stands for a record the Kafka client could not read, at its offset, in its share:
    set aside (dead-lettered, with no value or headers) and committed past like any
    record no stage can process (pipeline.StageLoop._take_carefully), or skipped by the
    department tool (departments.fetching)."""

    problem: str = ""


def unreadable_record(partition: TopicPartition, offset: int,
                      error: BaseException) -> UnreadableRecord:
    return UnreadableRecord(
        partition.topic, partition.partition, offset, timestamp=-1, timestamp_type=0,
        key=None, value=None, checksum=None, serialized_key_size=-1,
        serialized_value_size=-1, headers=(),
        problem=f"the Kafka client cannot read this record ({type(error).__name__}: a"
                " header name that is not UTF-8, or a batch failing its checksum)")


async def unreadable_offset(consumer: AIOKafkaConsumer, partition: TopicPartition) -> int:
    """The offset of the record the Kafka client stopped at, right after reading the
    partition raised UNREADABLE: from its fetch state (aiokafka 0.14: the partition's
    fetched records go on from there; the consumer's position may stand before it, at
    transaction markers or aborted records it had skipped), else the position."""
    fetcher = getattr(consumer, "_fetcher", None)
    result = getattr(fetcher, "_records", {}).get(partition)
    records = getattr(result, "_partition_records", None)
    offset = getattr(records, "next_fetch_offset", None)
    if isinstance(offset, int):
        return offset
    position: int = await consumer.position(partition)
    return position


async def fetch_past_unreadable(consumer: AIOKafkaConsumer, *, timeout_ms: int,
                                partitions: Iterable[TopicPartition] | None = None,
                                ) -> dict[TopicPartition, list[ConsumerRecord]]:
    """One fetch for a reader that takes every record it fetches in order, with a group
    or without (the dead-letter count and listing, the followers of announcements, the
    reader of the tickets held as dead letters, which commits what this returns): a
    record the Kafka client cannot read comes as an UnreadableRecord in its place, and
    the reader goes on past it, where a plain fetch would raise on it every time. A fetch
    that meets one returns nothing of what it took: each of its partitions (`partitions`,
    else those assigned) is read again from where it stood before the fetch, a record at
    a time, up to and including its first unreadable record, or CAREFUL_RECORDS records,
    or until none came in CAREFUL_WAIT_MS (_read_up_to_unreadable). With no partition
    whose position is known yet, it waits `timeout_ms` and returns nothing. (The stages'
    and the department tool's readers keep their own account of what they took:
    pipeline.StageLoop, departments.fetching.)"""
    before = await _positions(consumer, partitions, within=timeout_ms / 1000)
    if not before:  # none assigned yet, or none whose position is known yet
        await asyncio.sleep(timeout_ms / 1000)
        return {}
    try:
        fetched: dict[TopicPartition, list[ConsumerRecord]] = await consumer.getmany(
            *before, timeout_ms=timeout_ms)
        return fetched
    except UNREADABLE:
        pass
    taken: dict[TopicPartition, list[ConsumerRecord]] = {}
    for partition, offset in before.items():
        with contextlib.suppress(IllegalStateError):  # no longer assigned: not read
            consumer.seek(partition, offset)
            records = await _read_up_to_unreadable(consumer, partition)
            if records:
                taken[partition] = records
    return taken


async def _positions(consumer: AIOKafkaConsumer, partitions: Iterable[TopicPartition] | None,
                     *, within: float) -> dict[TopicPartition, int]:
    """Where each partition (those assigned, if none are named) is read from next. A
    position not known yet (the broker asked, and not answered within `within`: it may
    be unreachable) leaves its partition out of this fetch; so does one unassigned."""
    async def position(partition: TopicPartition) -> tuple[TopicPartition, int | None]:
        with contextlib.suppress(TimeoutError, IllegalStateError):
            return partition, await asyncio.wait_for(consumer.position(partition), within)
        return partition, None

    chosen = list(consumer.assignment() if partitions is None else partitions)
    found = await asyncio.gather(*(position(partition) for partition in chosen))
    return {partition: offset for partition, offset in found if offset is not None}


async def _read_up_to_unreadable(consumer: AIOKafkaConsumer, partition: TopicPartition
                                 ) -> list[ConsumerRecord]:
    """The partition's records a record at a time, up to and including the first the
    Kafka client cannot read (then sought past); or until none came in CAREFUL_WAIT_MS,
    or CAREFUL_RECORDS came (a record further on is met by a later fetch, and read
    carefully from there: each pass reads on)."""
    records: list[ConsumerRecord] = []
    while len(records) < CAREFUL_RECORDS:
        try:
            got = (await consumer.getmany(partition, timeout_ms=CAREFUL_WAIT_MS,
                                          max_records=1)).get(partition, [])
        except UNREADABLE as error:
            offset = await unreadable_offset(consumer, partition)
            consumer.seek(partition, offset + 1)
            return [*records, unreadable_record(partition, offset, error)]
        if not got:
            break
        records += got
    return records


def classify(error: BaseException) -> Fault:
    if isinstance(error, Transient):
        return Fault.TRANSIENT
    if isinstance(error, db.STORE_ERRORS):
        if db.is_outage(error):
            return Fault.OUTAGE
        return Fault.TRANSIENT if db.is_conflict(error) else Fault.RECORD
    if isinstance(error, KafkaError):
        unreachable = isinstance(error, KafkaConnectionError | KafkaTimeoutError)
        return Fault.OUTAGE if unreachable or error.retriable else Fault.RECORD
    if isinstance(error, TimeoutError | ConnectionError):
        return Fault.OUTAGE
    return Fault.RECORD


# Errors whose text says what is wrong with the record without repeating its values.
SPEAKING = (envelope.EnvelopeError, envelope.Unserialisable, events.UntrustedEvent,
             Unprocessable, Transient)


def reason(error: BaseException) -> str:
    """Why a record is dead-lettered, as the dead-letter headers give it: never the
    record's values (they may be personal data)."""
    if isinstance(error, ValidationError):  # a map's keys not named (data_paths)
        return data_paths.reasons(error.errors(include_input=False, include_url=False))
    if isinstance(error, SPEAKING):
        return str(error)
    if isinstance(error, db.STORE_ERRORS):
        if db.is_conflict(error):
            return ("the store turned its transaction back for conflicts with others"
                    " (a deadlock, a serialization failure, or the server's lock"
                    " timeout)")
        if db.holds_undecodable_text(error):  # the driver's message quotes that text
            column = db.undecodable_column(error)  # its name is schema: told
            where = f"column '{column}' of a row" if column else "a row"
            return (f"{where} the record needs holds text that is not UTF-8 in the store"
                    f" ({type(error).__name__})")
        # The store's code (SQLite's result code, no such table or column: SQLITE_ERROR;
        # PostgreSQL's SQLSTATE, a null where none may be: SQLSTATE 23502) is what there
        # is to go on: the message, which names the column or quotes the row, is not.
        named = ", ".join(filter(None, (type(error).__name__, db.error_code(error))))
        return f"the store refused the record ({named})"
    return f"unexpected {type(error).__name__} while processing the record"


def error_class(error: BaseException) -> str:
    cause = error.__cause__ if isinstance(error, Unprocessable) else None
    return type(cause or error).__name__


def where(error: BaseException) -> str:
    """The last frames of an error's traceback, for the log: the code, not the message
    (which may repeat the record's values)."""
    return "".join(traceback.format_tb(error.__traceback__, limit=-3))


def dead_letter_headers(record: ConsumerRecord, reason: str, error_class: str,
                        stage: str = "") -> envelope.Headers:
    """The record's own headers (those with a value), then where it came from, which
    stage set it aside and why."""
    own = [(name, raw) for name, raw in record.headers or ()
           if isinstance(name, str) and isinstance(raw, bytes)]
    return [*own, *_about(record, reason, error_class, stage)]


def _about(record: ConsumerRecord, reason: str, error_class: str,
           stage: str) -> envelope.Headers:
    return [
        (topics.DLQ_SOURCE_TOPIC, record.topic.encode()),
        (topics.DLQ_SOURCE_PARTITION, str(record.partition).encode()),
        (topics.DLQ_SOURCE_OFFSET, str(record.offset).encode()),
        (topics.DLQ_ERROR, reason.encode()[:1000]),
        (topics.DLQ_ERROR_CLASS, error_class.encode()),
        *([(topics.DLQ_STAGE, stage.encode())] if stage else []),
    ]


# What a dead letter too large to keep whole keeps of its record's own headers: which
# event and ticket it was (the router's reader of the dead letters holds a ticket by its
# `ce_ticketid`; the listing shows its type and ticket), each only within the envelope's
# bound on it (envelope.MAX_ATTRIBUTE: a few hundred bytes in all).
IDENTIFYING = ("ce_id", "ce_type", "ce_ticketid", "ce_correlationid")


def dead_letter(record: ConsumerRecord, error: BaseException, *,
                stage: str = "") -> envelope.Record:
    """The dead-letter record for a record and why it failed: its value, key and headers
    as they came, with the reason and the source added. One too large for that goes
    without its value, and of its own headers keeps only those that identify it
    (IDENTIFYING), marked `dlq_value_dropped`, with the platform its value names
    (`dlq_platform`, a credential's subject: the held tickets' reader tells that
    platform its ticket is held)."""
    reason_given, error_class_name = reason(error), error_class(error)
    value = record.value if isinstance(record.value, bytes) else b""
    key = record.key if isinstance(record.key, bytes) else b""
    letter = envelope.Record(topics.DEAD_LETTERS, key, value,
                             dead_letter_headers(record, reason_given, error_class_name, stage))
    if letter.size > envelope.MAX_RECORD_BYTES:  # it came in at the broker's limit
        platform = dead_letter_reading.platform_of(value)
        letter = envelope.Record(topics.DEAD_LETTERS, key, b"", [
            *_identifying(record.headers),
            *_about(record, reason_given, error_class_name, stage),
            (topics.DLQ_VALUE_DROPPED, b"too large to dead-letter whole; read it at its source"),
            *([(topics.DLQ_PLATFORM, platform.encode())] if platform else [])])
    return letter


def _identifying(headers: Iterable[tuple[object, object]] | None) -> envelope.Headers:
    """A record's own headers that identify it (IDENTIFYING): each the last of its name,
    as a reader of the whole record takes it (dead_letter_reading.header_values), where
    within its bound."""
    last = {name: raw for name, raw in headers or ()
            if isinstance(name, str) and name in IDENTIFYING}
    return [(name, raw) for name, raw in last.items()
            if isinstance(raw, bytes) and 0 < len(raw) <= envelope.MAX_ATTRIBUTE[name]]
