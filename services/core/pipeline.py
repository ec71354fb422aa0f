"""The consume-transform-produce loop every pipeline stage runs.

A stage is a `Transform`: it turns one incoming event into the events it must publish.
Exactly once: the batch's output and its consumed offsets are committed in one Kafka
transaction. At least once: the loop publishes, waits until the broker has acknowledged
every record, and only then commits the offsets, so a crash replays rather than loses.

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
from aiokafka.errors import CommitFailedError, ProducerFenced
from pydantic import ValidationError

from services.core import envelope, kafka, topics

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
    """Runs one stage until `stop` is set; finishes the batch in hand before returning."""

    def __init__(
        self,
        *,
        name: str,
        consumer: AIOKafkaConsumer,
        producer: AIOKafkaProducer,
        transform: Transform,
        transactions_for_group: str | None = None,
        retry_pause_seconds: float = 1.0,
        max_batch: int = 500,
    ) -> None:
        """With `transactions_for_group`, the producer is transactional: each batch's
        output and the group's consumed offsets are committed in one Kafka transaction
        (exactly once for `read_committed` readers); without, at least once."""
        self.name = name
        self._transactions_for_group = transactions_for_group
        self._consumer = consumer
        self._producer = producer
        self._transform = transform
        self._retry_pause = retry_pause_seconds
        self._max_batch = max_batch
        self.processed = 0
        self.dead_lettered = 0

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            batch = await self._consumer.getmany(timeout_ms=200, max_records=self._max_batch)
            if not batch:
                continue
            try:
                if self._transactions_for_group is None:
                    await self._process(batch)
                    await self._commit(batch)
                else:
                    await self._process_in_transaction(batch, self._transactions_for_group)
            except ProducerFenced:
                # A newer instance with our transactional id took over: stop for good.
                logger.error("stage %s fenced by a newer instance; stopping", self.name)
                raise
            except Exception:
                logger.exception("stage %s failed on a batch; retrying it", self.name)
                self._rewind(batch)
                await asyncio.sleep(self._retry_pause)

    async def _process_in_transaction(self, batch: dict[TopicPartition, list[ConsumerRecord]],
                                      group_id: str) -> None:
        # Leaving the block by an exception aborts the transaction: nothing of the batch
        # becomes visible, and its offsets stay uncommitted.
        async with self._producer.transaction():
            await self._process(batch)
            await self._producer.send_offsets_to_transaction(_next_offsets(batch), group_id)

    async def _process(self, batch: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        acknowledgements: list[asyncio.Future[object]] = []
        readable: list[tuple[ConsumerRecord, envelope.Event]] = []
        for records in batch.values():
            for record in records:
                try:
                    readable.append((record, envelope.from_record(record.headers,
                                                                  record.value)))
                except envelope.EnvelopeError as exc:
                    acknowledgements.append(
                        await self._dead_letter(record, str(exc), type(exc).__name__))
        if isinstance(self._transform, Prefetching):
            await self._transform.prefetch([event for _, event in readable])
        for record, event in readable:
            acknowledgements.extend(await self._handle(record, event))
        if isinstance(self._transform, Batching):
            await self._transform.finish_batch()
        await asyncio.gather(*acknowledgements)
        self.processed += sum(len(records) for records in batch.values())

    async def _handle(self, record: ConsumerRecord,
                      event: envelope.Event) -> list[asyncio.Future[object]]:
        try:
            outputs = await self._transform(event)
        except ValidationError as exc:
            reason = describe_validation_error(exc)
            return [await self._dead_letter(record, reason, type(exc).__name__)]
        except Unprocessable as exc:
            cause = exc.__cause__ or exc
            return [await self._dead_letter(record, str(exc), type(cause).__name__)]
        return [await kafka.send(self._producer, out.topic, out.event, key=out.key)
                for out in outputs]

    async def _dead_letter(
        self, record: ConsumerRecord, reason: str, error_class: str
    ) -> asyncio.Future[object]:
        logger.warning(
            "record sent to the dead-letter topic",
            extra={"stage": self.name, "topic": record.topic, "partition": record.partition,
                   "offset": record.offset, "error": reason, "error_class": error_class},
        )
        self.dead_lettered += 1
        future: asyncio.Future[object] = await self._producer.send(
            topics.DEAD_LETTERS,
            record.value,
            key=record.key,
            headers=dead_letter_headers(record, reason, error_class),
        )
        return future

    def _rewind(self, batch: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        for partition, records in batch.items():
            if records:
                self._consumer.seek(partition, records[0].offset)

    async def _commit(self, batch: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        try:
            await self._consumer.commit(_next_offsets(batch))
        except CommitFailedError:
            # The group rebalanced under us: another member replays these records.
            logger.warning("offset commit failed after a rebalance", extra={"stage": self.name})


def _next_offsets(batch: dict[TopicPartition, list[ConsumerRecord]]) -> dict[TopicPartition, int]:
    return {tp: records[-1].offset + 1 for tp, records in batch.items() if records}
