"""Dead letters: list what the stages could not process, and replay it at most once.

Listing reads `tickets.dlq` with a throwaway consumer (no group, nothing committed) up to
the end offsets it saw on starting, so it always returns. Replaying re-produces a dead
letter to its source topic and, in the same Kafka transaction, writes a marker keyed by
the dead letter's id to the compacted topic `tickets.dlq.replayed`: the marker exists
exactly when the record was replayed, so a repeated request skips it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import re
from collections.abc import AsyncGenerator, AsyncIterator, Collection, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import NewTopic
from aiokafka.errors import (
    IllegalOperation,
    KafkaError,
    ProducerFenced,
    TopicAlreadyExistsError,
)

from services.core import kafka, topics
from services.core.settings import Settings

logger = logging.getLogger(__name__)

REPLAYED = f"{topics.DEAD_LETTERS}.replayed"
REPLAY_HEADER = "dlq_replayed_from"
# The same for every instance and process, so that a replayer fences any other (see
# `_replay_selected`).
TRANSACTIONAL_ID = "dead-letter-replay"
MAX_LIMIT = 1000
ID_PATTERN = r"^\d{1,9}:\d{1,19}$"
# Kafka aborts a transaction left open longer than this (aiokafka's default timeout).
TRANSACTION_TIMEOUT_SECONDS = 60.0
# A second producer with our transactional id fences the first: one replay per process.
_replaying = asyncio.Lock()


class Unavailable(Exception):
    """Kafka did not answer in time; nothing was listed or replayed."""


class ReplayConflict(Exception):
    """Another process replayed at the same time and fenced this request's transaction,
    which was aborted: nothing of it was replayed."""


class InvalidSelection(ValueError):
    """A selection that names no dead letters clearly; `field` says which part is wrong."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


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
            raise InvalidSelection("ids", "give either ids or a filter (source_topic,"
                                          " error_class), not both and not neither")
        for index, text in enumerate(self.ids):
            if not re.fullmatch(ID_PATTERN, text):
                raise InvalidSelection(f"ids.{index}", "not a dead-letter id 'partition:offset'")
        if not 1 <= self.limit <= MAX_LIMIT:
            raise InvalidSelection("limit", f"must be between 1 and {MAX_LIMIT}")


@dataclass
class ReplayResult:
    replayed: list[str] = field(default_factory=list)
    skipped_already_replayed: list[str] = field(default_factory=list)
    not_found: list[str] = field(default_factory=list)
    unreplayable: list[str] = field(default_factory=list)  # no source topic, or it is gone

    def counts(self) -> dict[str, int]:
        return {outcome: len(ids) for outcome, ids in asdict(self).items()}


def dead_letter_id(partition: int, offset: int) -> str:
    return f"{partition}:{offset}"


def parse_id(text: str) -> tuple[int, int]:
    if not re.fullmatch(ID_PATTERN, text):
        raise ValueError(f"not a dead-letter id 'partition:offset': {text!r}")
    partition, offset = text.split(":")
    return int(partition), int(offset)


def header_values(headers: Sequence[tuple[str, bytes]] | None) -> dict[str, str]:
    """Headers by name; the last wins, as the pipeline appends its dlq_* headers last."""
    return {name: raw.decode("utf-8", "replace") for name, raw in headers or ()}


def matches(record: Record, *, source_topic: str | None, error_class: str | None) -> bool:
    found = header_values(record.headers)
    return ((source_topic is None or found.get("dlq_source_topic") == source_topic)
            and (error_class is None or found.get("dlq_error_class") == error_class))


def describe(record: Record, *, include_value: bool = False) -> dict[str, Any]:
    """A dead letter for people and tools; the value only on request (personal data)."""
    found = header_values(record.headers)
    described: dict[str, Any] = {
        "id": dead_letter_id(record.partition, record.offset),
        "partition": record.partition,
        "offset": record.offset,
        "timestamp": datetime.fromtimestamp(record.timestamp / 1000, UTC).isoformat(),
        "source_topic": found.get("dlq_source_topic"),
        "source_partition": _number(found.get("dlq_source_partition")),
        "source_offset": _number(found.get("dlq_source_offset")),
        "error": found.get("dlq_error"),
        "error_class": found.get("dlq_error_class"),
        "event_type": found.get("ce_type"),
        "ticket_id": found.get("ce_ticketid"),
        "replayed_from": found.get(REPLAY_HEADER),
        **_encoded("key", record.key),
    }
    if include_value:
        described |= _encoded("value", record.value)
    return described


def replay_headers(headers: Sequence[tuple[str, bytes]], replayed_from: str) -> list[
        tuple[str, bytes]]:
    """The original headers without the dead-letter ones, and where the replay came from."""
    return [*((name, raw) for name, raw in headers if not name.startswith("dlq_")),
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


async def list_dead_letters(
    settings: Settings, *, source_topic: str | None = None, error_class: str | None = None,
    limit: int = 100, since: str | None = None, include_value: bool = False,
) -> list[dict[str, Any]]:
    """Dead letters in (partition, offset) order after the id `since`, oldest first."""
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be between 1 and {MAX_LIMIT}")
    after = parse_id(since) if since else None
    found: list[dict[str, Any]] = []
    try:
        partitions = (await _topology(settings)).get(topics.DEAD_LETTERS, set())
        async with _reader(settings, "dead-letter-list") as consumer:
            starts = resume_points(partitions, after)
            async with contextlib.aclosing(_scan(consumer, topics.DEAD_LETTERS, starts,
                                                 settings)) as records:
                async for record in records:
                    if matches(record, source_topic=source_topic, error_class=error_class):
                        found.append(describe(record, include_value=include_value))
                        if len(found) == limit:
                            break
    except (KafkaError, OSError) as exc:
        raise Unavailable(f"{type(exc).__name__}: {exc}") from exc
    return found


async def replay(settings: Settings, selection: Selection) -> ReplayResult:
    """Re-produce the selected dead letters to their source topics, each at most once."""
    async with _replaying:
        producer = kafka.producer(settings, client_id=TRANSACTIONAL_ID,
                                  transactional_id=TRANSACTIONAL_ID)
        try:
            async with asyncio.timeout(TRANSACTION_TIMEOUT_SECONDS):
                topology = await _topology(settings, create_markers=True)
                async with _reader(settings, "dead-letter-replay") as consumer:
                    await producer.start()
                    async with producer.transaction():
                        result = await _replay_selected(consumer, producer, selection,
                                                        topology, settings)
        # A producer fenced by another replayer (or by the broker's transaction timeout)
        # fails its sends with IllegalOperation; either way its transaction is aborted.
        except (ProducerFenced, IllegalOperation) as exc:
            raise ReplayConflict("another replay ran at the same time") from exc
        except (KafkaError, OSError, TimeoutError) as exc:
            raise Unavailable(f"{type(exc).__name__}: {exc}") from exc
        finally:
            await producer.stop()
    logger.info("dead letters replayed", extra=result.counts())
    return result


async def _replay_selected(
    consumer: AIOKafkaConsumer, producer: AIOKafkaProducer, selection: Selection,
    topology: Mapping[str, set[int]], settings: Settings,
) -> ReplayResult:
    # Read only now: beginning the transaction fenced any other replayer and settled its
    # transaction, so the markers are final.
    done = await _replayed_ids(consumer, topology.get(REPLAYED, set()), settings)
    partitions = topology.get(topics.DEAD_LETTERS, set())
    wanted = {parse_id(text): text for text in selection.ids}
    starts, stops = resume_points(partitions, None), dict[int, int]()
    if wanted:  # read only the stretch of each partition that holds wanted ids
        starts, stops = {}, {}
        for partition, offset in sorted(wanted):
            if partition in partitions:
                starts.setdefault(partition, offset)
                stops[partition] = offset + 1
    result, seen, sent = ReplayResult(), set[str](), list[asyncio.Future[Any]]()
    async with contextlib.aclosing(_scan(consumer, topics.DEAD_LETTERS, starts, settings,
                                         stops=stops)) as records:
        async for record in records:
            this = dead_letter_id(record.partition, record.offset)
            if (wanted and (record.partition, record.offset) not in wanted) or (
                    not wanted and not matches(record, source_topic=selection.source_topic,
                                               error_class=selection.error_class)):
                continue
            seen.add(this)
            source = header_values(record.headers).get("dlq_source_topic")
            if this in done:
                result.skipped_already_replayed.append(this)
            elif source not in topology:
                result.unreplayable.append(this)
            elif len(result.replayed) < selection.limit:
                marker = {"replayed_to": source, "replayed_at": datetime.now(UTC).isoformat()}
                sent += [
                    await producer.send(source, record.value, key=record.key,
                                        headers=replay_headers(record.headers, this)),
                    await producer.send(REPLAYED, orjson.dumps(marker), key=this.encode())]
                for future in sent[-2:]:  # one failure is raised; the rest need no report
                    future.add_done_callback(_retrieved)
                result.replayed.append(this)
    await asyncio.gather(*sent)
    result.not_found = [text for text in wanted.values() if text not in seen]
    return result


def _retrieved(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


async def _replayed_ids(consumer: AIOKafkaConsumer, partitions: set[int],
                        settings: Settings) -> set[str]:
    done: set[str] = set()
    starts = resume_points(partitions, None)
    async with contextlib.aclosing(_scan(consumer, REPLAYED, starts, settings)) as markers:
        async for marker in markers:
            key = (marker.key or b"").decode()
            if marker.value is None:
                done.discard(key)  # a tombstone withdraws the marker: replayable again
            else:
                done.add(key)
    return done


@contextlib.asynccontextmanager
async def _reader(settings: Settings, client_id: str) -> AsyncIterator[AIOKafkaConsumer]:
    consumer = kafka.consumer(settings, group_id=None, client_id=client_id)
    try:
        await consumer.start()
        yield consumer
    finally:
        await consumer.stop()


async def _scan(consumer: AIOKafkaConsumer, topic: str, starts: Mapping[int, int],
                settings: Settings, *, stops: Mapping[int, int] | None = None
                ) -> AsyncGenerator[Any, None]:
    """Each partition's records in turn, from its start up to its end offset when the scan
    began (or its stop, if earlier): a scan never waits for records still to come."""
    partitions = {partition: TopicPartition(topic, partition) for partition in starts}
    if not partitions:
        return  # e.g. `since` names a partition past the last: nothing after it
    ends = await consumer.end_offsets(list(partitions.values()))
    loop = asyncio.get_running_loop()
    stall_seconds = 2 * settings.produce_timeout_seconds
    for number, partition in sorted(partitions.items()):
        end = min(ends[partition], (stops or {}).get(number, ends[partition]))
        position = starts[number]
        consumer.assign([partition])
        consumer.seek(partition, position)
        progressed_at = loop.time()
        while position < end:
            batch = await consumer.getmany(partition, timeout_ms=200)
            for record in batch.get(partition, []):
                if record.offset < end:
                    yield record
            # Compaction and transaction markers leave gaps: follow the position.
            now_at = await consumer.position(partition)
            if now_at > position:
                position, progressed_at = now_at, loop.time()
            elif loop.time() - progressed_at > stall_seconds:
                raise Unavailable(f"reading {topic} made no progress in {stall_seconds}s")


async def _topology(settings: Settings, *, create_markers: bool = False
                    ) -> dict[str, set[int]]:
    """Every topic's partitions, creating the marker topic first if asked and missing."""
    admin = kafka.admin(settings, client_id="dead-letter-admin")
    await admin.start()
    try:
        if create_markers and REPLAYED not in await admin.list_topics():
            # Compacted: the latest marker of every dead letter is kept whatever its age.
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics([NewTopic(
                    REPLAYED, settings.kafka_topic_partitions,
                    settings.kafka_replication_factor,
                    topic_configs={"cleanup.policy": "compact"})])
        return {topic["topic"]: {partition["partition"] for partition in topic["partitions"]}
                for topic in await admin.describe_topics() if topic["error_code"] == 0}
    finally:
        await admin.close()
