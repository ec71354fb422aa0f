"""Dead letters: list what the stages could not process, and replay it at most once.

Listing reads `tickets.dlq` with a throwaway consumer (no group, nothing committed) up to
the end offsets it saw on starting, so it always returns. Replaying re-produces a dead
letter to its source topic and, in the same Kafka transaction, writes a marker keyed by
the dead letter's id to the compacted topic `tickets.dlq.replayed`: the marker exists
exactly when the record was replayed, so a repeated request skips it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Collection, Mapping
from datetime import UTC, datetime
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import (
    IllegalOperation,
    KafkaError,
    ProducerFenced,
    TopicAlreadyExistsError,
)

from services.core import background, dead_letter_reading, faults, kafka, new_topics, topics
from services.core.settings import Settings
from services.router.dead_letter_records import (
    MAX_LIMIT,
    UNREADABLE,
    ReplayResult,
    Selection,
    describe,
    describe_unreadable,
    matches,
    replay_headers,
    replayable,
    resume_points,
    worth_describing_again,
)

logger = logging.getLogger(__name__)

# The same for every instance and process, so that a replayer fences any other (see
# `_replay_selected`).
TRANSACTIONAL_ID = "dead-letter-replay"
# Kafka aborts a transaction left open longer than this (aiokafka's default timeout).
TRANSACTION_TIMEOUT_SECONDS = 60.0
# A second producer with our transactional id fences the first: one replay per process.
_replaying = asyncio.Lock()


class Unavailable(Exception):
    """Kafka did not answer in time; nothing was listed or replayed."""


class ReplayConflict(Exception):
    """Another process replayed at the same time and fenced this request's transaction,
    which was aborted: nothing of it was replayed."""


async def list_dead_letters(
    settings: Settings, *, source_topic: str | None = None, error_class: str | None = None,
    limit: int = 100, since: str | None = None, include_value: bool = False,
) -> list[dict[str, Any]]:
    """Dead letters in (partition, offset) order after the id `since`, oldest first."""
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be between 1 and {MAX_LIMIT}")
    after = dead_letter_reading.parse_id(since) if since else None
    found: list[dict[str, Any]] = []
    try:
        partitions = (await _topology(settings)).get(topics.DEAD_LETTERS, set())
        async with _reader(settings, "dead-letter-list") as consumer:
            starts = resume_points(partitions, after)
            async with contextlib.aclosing(_scan(consumer, topics.DEAD_LETTERS, starts,
                                                 settings)) as records:
                async for record in records:
                    if isinstance(record, faults.UnreadableRecord):
                        # No header of it can be read: it matches no filter but its own.
                        if source_topic is None and error_class in (None, UNREADABLE):
                            found.append(describe_unreadable(
                                record.partition, record.offset, record.problem,
                                include_value=include_value))
                    elif matches(record, source_topic=source_topic,
                                 error_class=error_class):
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
    done = await _replayed(consumer, topology.get(topics.DEAD_LETTERS_REPLAYED, set()),
                           settings)
    partitions = topology.get(topics.DEAD_LETTERS, set())
    wanted = {dead_letter_reading.parse_id(text): text for text in selection.ids}
    starts, stops = resume_points(partitions, None), dict[int, int]()
    if wanted:  # read only the stretch of each partition that holds wanted ids
        starts, stops = {}, {}
        for partition, offset in sorted(wanted):
            if partition in partitions:
                starts.setdefault(partition, offset)
                stops[partition] = offset + 1
    sources = _SourceTopics(settings, topology)
    result, seen, sent = ReplayResult(), set[str](), list[asyncio.Future[Any]]()
    async with contextlib.aclosing(_scan(consumer, topics.DEAD_LETTERS, starts, settings,
                                         stops=stops)) as records:
        async for record in records:
            this = dead_letter_reading.dead_letter_id(record.partition, record.offset)
            if (wanted and (record.partition, record.offset) not in wanted) or (
                    not wanted and not matches(record, source_topic=selection.source_topic,
                                               error_class=selection.error_class)):
                continue
            seen.add(this)
            source = dead_letter_reading.header_values(record.headers).get(topics.DLQ_SOURCE_TOPIC)
            if this in done:
                result.skipped_already_replayed.append(this)
            elif isinstance(record, faults.UnreadableRecord) or not replayable(
                    source, await sources.existing(source)):
                result.unreplayable.append(this)
            elif len(result.replayed) < selection.limit:
                marker = {"replayed_to": source, "replayed_at": datetime.now(UTC).isoformat()}
                sent += [
                    await producer.send(source, record.value, key=record.key,
                                        headers=replay_headers(record.headers, this)),
                    await producer.send(topics.DEAD_LETTERS_REPLAYED, orjson.dumps(marker),
                                        key=this.encode())]
                for future in sent[-2:]:  # one failure is raised; the rest need no report
                    future.add_done_callback(background.retrieved)
                result.replayed.append(this)
    await asyncio.gather(*sent)
    result.not_found = [text for text in wanted.values() if text not in seen]
    return result


class _SourceTopics:
    """The topics a replay's dead letters name, as the cluster describes them. A stage
    input missing from the description may be a topic made a moment ago: the cluster is
    described again for a while (`new_topics`) before its dead letters are called
    unreplayable; one still missing then is gone, for the rest of this replay."""

    def __init__(self, settings: Settings, described: Collection[str]) -> None:
        self._settings, self._described, self._gone = settings, set(described), set[str]()

    async def existing(self, source: str | None) -> Collection[str]:
        """The topics that exist, as far as `source` is concerned."""
        if (source is not None and source not in self._gone
                and worth_describing_again(source, self._described)):
            if await _shows(self._settings, source):
                self._described.add(source)
            else:
                self._gone.add(source)
        return self._described


async def _shows(settings: Settings, topic: str) -> bool:
    """Whether the cluster describes `topic`, looked at again for a while. All its
    topics are described, not `topic` by name: naming a missing topic may create it."""
    admin = kafka.admin(settings, client_id="dead-letter-admin")
    await admin.start()
    try:
        return topic in await new_topics.looked_again(
            lambda: kafka.described_partitions(admin), lambda described: topic in described)
    finally:
        await admin.close()


async def _replayed(consumer: AIOKafkaConsumer, partitions: set[int],
                    settings: Settings) -> dead_letter_reading.Replayed:
    done = dead_letter_reading.Replayed()
    starts = resume_points(partitions, None)
    async with contextlib.aclosing(_scan(consumer, topics.DEAD_LETTERS_REPLAYED, starts,
                                         settings)) as markers:
        async for marker in markers:
            done.read(marker)
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
            batch = await faults.fetch_past_unreadable(consumer, timeout_ms=200,
                                                       partitions=[partition])
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
    """Every topic's partitions, creating the marker topic first if asked and missing;
    asked for, the marker topic is in them (else Unavailable: nothing is replayed)."""
    admin = kafka.admin(settings, client_id="dead-letter-admin")
    await admin.start()
    try:
        markers = topics.DEAD_LETTERS_REPLAYED
        if create_markers and markers not in await admin.list_topics():
            # Compacted, as `routing topics` makes it (where the router may not).
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics([kafka.new_topic(settings, markers)])
        described = await kafka.described_partitions(admin)
        if create_markers and markers not in described:
            # Made a moment ago (here, or by another replayer): read without its markers,
            # a dead letter replayed already would be replayed again.
            described = await new_topics.looked_again(
                lambda: kafka.described_partitions(admin), lambda seen: markers in seen)
            if markers not in described:
                raise Unavailable(f"{markers} is not described by the cluster yet")
        return {topic: set(partitions) for topic, partitions in described.items()}
    finally:
        await admin.close()
