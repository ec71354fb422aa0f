"""The consume-transform-produce loop every pipeline stage runs.

A stage is a `Transform`: it turns one incoming event into the events it must publish.
Exactly once: each partition's share of a batch, its output and its consumed offset, is
committed in one Kafka transaction of that partition's producer (see partition_producers).
At least once: the loop publishes, waits until the broker has acknowledged every record,
and only then commits the offsets, so a crash replays rather than loses.

A record the transform cannot process (`Unprocessable`) goes to the dead-letter topic with
the reason in its headers, and the loop carries on. Any other error (database or broker
down) is transient: the batch is rewound and retried after a pause, nothing is skipped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol, runtime_checkable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, InvalidProducerEpoch, ProducerFenced
from pydantic import ValidationError

from services.core import background, envelope, kafka, partition_producers, topics

logger = logging.getLogger(__name__)


class Unprocessable(Exception):
    """A record that no retry will fix: it goes to the dead-letter topic."""


Transform = Callable[[envelope.Event], Awaitable[Sequence[kafka.Output]]]


@runtime_checkable
class Prefetching(Protocol):
    """A transform that can load what a whole batch needs at once (one query, not one
    per record) before the records are transformed one by one."""

    async def prefetch(self, events: Sequence[envelope.Event]) -> None: ...


@runtime_checkable
class Batching(Protocol):
    """A transform that keeps what it records about a batch (in its database) until
    the batch is transformed, then writes it at once, before the batch is committed."""

    async def finish_batch(self) -> None: ...


def describe_validation_error(error: ValidationError) -> str:
    """The fields and what was wrong with them, without echoing the values (personal data)."""
    return "; ".join(
        f"{'.'.join(str(part) for part in detail['loc']) or 'record'}: {detail['msg']}"
        for detail in error.errors(include_input=False, include_url=False)
    )


def dead_letter_headers(record: ConsumerRecord, reason: str, error_class: str) -> envelope.Headers:
    return [
        *(record.headers or ()),
        ("dlq_source_topic", record.topic.encode()),
        ("dlq_source_partition", str(record.partition).encode()),
        ("dlq_source_offset", str(record.offset).encode()),
        ("dlq_error", reason.encode()[:1000]),
        ("dlq_error_class", error_class.encode()),
    ]


class StageLoop:
    """Runs one stage until `stop` is set; finishes the batch in hand before returning.

    Exactly once (with `producers`): each partition's records of a batch are transformed
    and committed, with the partition's consumed offset, in a transaction of that
    partition's own producer. At least once (with `producer`): the batch is published,
    acknowledged, then its offsets committed."""

    def __init__(
        self,
        *,
        name: str,
        consumer: AIOKafkaConsumer,
        transform: Transform,
        producer: AIOKafkaProducer | None = None,
        producers: partition_producers.PartitionProducers | None = None,
        retry_pause_seconds: float = 1.0,
        max_batch: int = 500,
        fenced_grace_seconds: float = 120.0,
        transaction_timeout_seconds: float = 30.0,
    ) -> None:
        if (producer is None) == (producers is None):
            raise ValueError("give either a producer (at least once) or producers")
        self.name = name
        self._consumer = consumer
        self._producer = producer
        self.producers = producers
        self._transform = transform
        self._retry_pause = retry_pause_seconds
        self._max_batch = max_batch
        self._fenced_grace = fenced_grace_seconds
        self.transaction_timeout_seconds = transaction_timeout_seconds
        self._batch_lock = asyncio.Lock()
        # Transforms keep per-batch state (Batching): one partition's records at a time.
        self._transform_lock = asyncio.Lock()
        self.handover = partition_producers.Handover(consumer, batch_lock=self._batch_lock,
                                                     producers=producers)
        self.processed = 0
        self.dead_lettered = 0

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self._recover_partitions()
            batch = await self._consumer.getmany(timeout_ms=200, max_records=self._max_batch)
            if not batch:
                continue
            async with self._batch_lock:  # a revocation waits for this batch
                if self.producers is None:
                    retry = not await self._process_and_commit(batch)
                else:
                    retry = not all(await asyncio.gather(*(
                        self._process_in_transaction(tp, records, self.producers)
                        for tp, records in batch.items())))
            if retry:
                await asyncio.sleep(self._retry_pause)

    async def _process_and_commit(self, batch: dict[TopicPartition, list[ConsumerRecord]]
                                  ) -> bool:
        assert self._producer is not None
        try:
            await self._process([r for records in batch.values() for r in records],
                                self._producer)
            await self._commit(batch)
        except Exception:
            logger.exception("stage %s failed on a batch; retrying it", self.name)
            for partition, records in batch.items():
                self._rewind(partition, records)
            return False
        return True

    async def _process_in_transaction(
        self, partition: TopicPartition, records: list[ConsumerRecord],
        producers: partition_producers.PartitionProducers,
    ) -> bool:
        """False when the records must be retried after a pause."""
        producer = producers.get(partition)
        if producer is None:  # not (or no longer) ours to process: undo the fetch
            self._rewind(partition, records)
            return True
        try:
            await background.within(self.transaction_timeout_seconds,
                                    self._transaction(partition, records, producer, producers))
        except TimeoutError:
            # A broker that died mid-transaction can leave aiokafka waiting for good: give
            # the partition a fresh producer, whose start fences this one and aborts its
            # transaction, and process the records again.
            logger.error("stage %s: a transaction did not finish in %ss; starting afresh",
                         self.name, self.transaction_timeout_seconds,
                         extra={"partition": str(partition)})
            self._rewind(partition, records)
            self._pause(partition)
            await producers.failed(partition)
            return False
        except (ProducerFenced, InvalidProducerEpoch):
            # (InvalidProducerEpoch: a record sent after the fencing, before the commit.)
            # The partition's new owner started its producer: leave the records to it
            # and wait for the rebalance that tells this instance what it owns now.
            logger.warning("stage %s lost a partition to another instance", self.name,
                           extra={"partition": str(partition)})
            self._rewind(partition, records)
            self._pause(partition)
            await producers.fenced(partition)
            return True
        except Exception:
            logger.exception("stage %s failed on a batch; retrying it", self.name,
                             extra={"partition": str(partition)})
            self._rewind(partition, records)
            if _unusable(producer):  # a fresh one takes over (see _recover_partitions)
                self._pause(partition)
                await producers.failed(partition)
            return False
        return True

    async def _transaction(self, partition: TopicPartition, records: list[ConsumerRecord],
                           producer: AIOKafkaProducer,
                           producers: partition_producers.PartitionProducers) -> None:
        # Leaving the block by an exception aborts the transaction: nothing of it becomes
        # visible, and the partition's offset stays uncommitted.
        async with producer.transaction():
            await self._process(records, producer)
            await producer.send_offsets_to_transaction(
                {partition: records[-1].offset + 1}, producers.group_id)

    async def _recover_partitions(self) -> None:
        """Start the producers of partitions assigned, or whose producer failed, since
        the last batch (the only place producers start); take back a partition that
        stays fenced without the rebalance that should follow."""
        if self.producers is None:
            return
        stuck = self.producers.fenced_longer_than(
            self._fenced_grace, still_assigned=self._consumer.assignment())
        for partition in stuck:
            # Still ours by the group, so no other member took it: the epoch was bumped
            # for another reason (the broker aborting a transaction that timed out).
            # Take it back with a fresh producer.
            logger.error("stage %s fenced with no rebalance; taking the partition back",
                         self.name, extra={"partition": str(partition)})
            await self.producers.failed(partition)
        if not self.handover.without_producer():
            return
        async with self._batch_lock:
            # Read again under the lock: a revocation may have run while we waited.
            missing = self.handover.without_producer()
            if missing:
                await self.handover.take_over(missing)

    async def _process(self, records: list[ConsumerRecord], producer: AIOKafkaProducer
                       ) -> None:
        async with self._transform_lock:
            acknowledgements = await self._transform_records(records, producer)
        await asyncio.gather(*acknowledgements)
        self.processed += len(records)

    async def _transform_records(self, records: list[ConsumerRecord],
                                 producer: AIOKafkaProducer) -> list[asyncio.Future[object]]:
        acknowledgements: list[asyncio.Future[object]] = []
        readable: list[tuple[ConsumerRecord, envelope.Event]] = []
        for record in records:
            try:
                readable.append((record, envelope.from_record(record.headers, record.value)))
            except envelope.EnvelopeError as exc:
                acknowledgements.append(
                    await self._dead_letter(producer, record, str(exc), type(exc).__name__))
        if isinstance(self._transform, Prefetching):
            await self._transform.prefetch([event for _, event in readable])
        for record, event in readable:
            acknowledgements.extend(await self._handle(producer, record, event))
        if isinstance(self._transform, Batching):
            await self._transform.finish_batch()
        return acknowledgements

    async def _handle(self, producer: AIOKafkaProducer, record: ConsumerRecord,
                      event: envelope.Event) -> list[asyncio.Future[object]]:
        try:
            outputs = await self._transform(event)
        except ValidationError as exc:
            reason = describe_validation_error(exc)
            return [await self._dead_letter(producer, record, reason, type(exc).__name__)]
        except Unprocessable as exc:
            cause = exc.__cause__ or exc
            return [await self._dead_letter(producer, record, str(exc), type(cause).__name__)]
        return [await kafka.send(producer, out.topic, out.event, key=out.key)
                for out in outputs]

    async def _dead_letter(
        self, producer: AIOKafkaProducer, record: ConsumerRecord, reason: str,
        error_class: str,
    ) -> asyncio.Future[object]:
        logger.warning(
            "record sent to the dead-letter topic",
            extra={"stage": self.name, "topic": record.topic, "partition": record.partition,
                   "offset": record.offset, "error": reason, "error_class": error_class},
        )
        self.dead_lettered += 1
        future: asyncio.Future[object] = await producer.send(
            topics.DEAD_LETTERS,
            record.value,
            key=record.key,
            headers=dead_letter_headers(record, reason, error_class),
        )
        return future

    def _rewind(self, partition: TopicPartition, records: list[ConsumerRecord]) -> None:
        if records and partition in self._consumer.assignment():
            self._consumer.seek(partition, records[0].offset)

    def _pause(self, partition: TopicPartition) -> None:
        if partition in self._consumer.assignment():
            self._consumer.pause(partition)

    async def _commit(self, batch: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        try:
            await self._consumer.commit(_next_offsets(batch))
        except CommitFailedError:
            # The group rebalanced under us: another member replays these records.
            logger.warning("offset commit failed after a rebalance", extra={"stage": self.name})


def _unusable(producer: AIOKafkaProducer) -> bool:
    """Whether the producer's transactions failed for good (aiokafka has no public flag)."""
    manager = getattr(producer, "_txn_manager", None)
    return bool(manager is not None and manager.is_fatal_error())


def _next_offsets(batch: dict[TopicPartition, list[ConsumerRecord]]) -> dict[TopicPartition, int]:
    return {tp: records[-1].offset + 1 for tp, records in batch.items() if records}
