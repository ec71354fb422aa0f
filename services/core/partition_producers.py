"""One transactional producer per input partition a stage owns, and the hand-over of
partitions between instances on a consumer-group rebalance.

aiokafka's transactional offset commits carry no group generation (no KIP-447 fencing),
so a member that lost its partitions (a zombie, resumed after a long pause) could still
commit outputs and offsets after the new owner re-read the old ones. The transactional
id therefore belongs to the partition, not to the instance (`<group>-<topic>-<partition>`,
the design Kafka Streams used before KIP-447): the new owner's `init_transactions` fences
the old owner's producer and aborts the transaction it left open, and waits until the old
owner's last transaction is complete before this module reads the committed offset.

Producers are started by the stage's loop only, with the batch lock held (`Handover.
take_over`); the rebalance listener just marks the partitions it was given. Two starters
of one transactional id in one process would fence each other, and a slow start (TLS and
SASL handshakes) inside the listener would also hold up the consumer's heartbeats.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import KafkaError

from services.core import background

logger = logging.getLogger(__name__)

START_SECONDS = 30.0
STOP_SECONDS = 10.0

NewProducer = Callable[[str], AIOKafkaProducer]
"""Builds an unstarted producer with the given transactional id."""


class PartitionProducers:
    """The started producer of each partition this instance owns; none for the others.

    At most one producer per transactional id is alive: opening and closing take turns
    (`_turn`), a partition that has a producer is never given a second one, and every
    producer dropped is stopped first."""

    def __init__(self, new_producer: NewProducer, *, group_id: str) -> None:
        self.group_id = group_id
        self._new_producer = new_producer
        self._producers: dict[TopicPartition, AIOKafkaProducer] = {}
        self._to_open: set[TopicPartition] = set()
        self._fenced_at: dict[TopicPartition, float] = {}
        self._turn = asyncio.Lock()

    def transactional_id(self, partition: TopicPartition) -> str:
        return f"{self.group_id}-{partition.topic}-{partition.partition}"

    def get(self, partition: TopicPartition) -> AIOKafkaProducer | None:
        return self._producers.get(partition)

    def expect(self, partitions: Iterable[TopicPartition]) -> None:
        """The partitions were assigned: they need a producer (see `to_open`)."""
        self._to_open.update(partitions)

    def to_open(self, assigned: set[TopicPartition]) -> set[TopicPartition]:
        """Assigned partitions still without a producer: just assigned, or the start
        or the producer failed."""
        return self._to_open & assigned

    async def open(self, partitions: Iterable[TopicPartition]) -> set[TopicPartition]:
        """Start a producer for each partition (`init_transactions`: fences any former
        owner); returns the partitions that got one. The others stay to be opened."""
        async with self._turn:
            wanted = sorted(set(partitions) - self._producers.keys())
            started = await self._start_all(wanted)
            for partition, producer in started.items():
                self._fenced_at.pop(partition, None)
                if producer is not None:
                    self._producers[partition] = producer
                    self._to_open.discard(partition)
            return {tp for tp, producer in started.items() if producer is not None}

    async def close(self, partitions: Iterable[TopicPartition]) -> None:
        async with self._turn:
            partitions = list(partitions)
            closing = [self._producers.pop(tp) for tp in partitions if tp in self._producers]
            for tp in partitions:
                self._fenced_at.pop(tp, None)
                self._to_open.discard(tp)
            await asyncio.gather(*(_stop_quietly(producer) for producer in closing))

    async def close_all(self) -> None:
        await self.close([*self._producers, *self._fenced_at, *self._to_open])

    async def failed(self, partition: TopicPartition) -> None:
        """The partition's producer is unusable (or it lacks its offset): start afresh."""
        await self.close([partition])
        self._to_open.add(partition)

    async def fenced(self, partition: TopicPartition) -> None:
        """Another instance took the partition over: drop our producer; the consumer's
        next rebalance tells us what we own now."""
        await self.close([partition])
        self._fenced_at[partition] = time.monotonic()

    def fenced_longer_than(self, seconds: float, *, still_assigned: set[TopicPartition]
                           ) -> list[TopicPartition]:
        """Partitions fenced over `seconds` ago that no rebalance has taken from us."""
        now = time.monotonic()
        return [tp for tp, at in self._fenced_at.items()
                if tp in still_assigned and now - at > seconds]

    async def _start_all(self, partitions: list[TopicPartition]
                         ) -> dict[TopicPartition, AIOKafkaProducer | None]:
        tasks = {tp: asyncio.ensure_future(self._start(tp)) for tp in partitions}
        try:
            await asyncio.gather(*tasks.values())
        except BaseException:
            # Cancelled: a producer already started must not outlive it unstopped.
            for task in tasks.values():
                task.cancel()
            await asyncio.gather(*tasks.values(), return_exceptions=True)
            await asyncio.gather(*(_stop_quietly(producer) for producer in (
                _result(task) for task in tasks.values()) if producer is not None))
            raise
        return {tp: task.result() for tp, task in tasks.items()}

    async def _start(self, partition: TopicPartition) -> AIOKafkaProducer | None:
        producer = self._new_producer(self.transactional_id(partition))
        try:
            # Bounded: a start that hangs is given up and tried again on the next pass.
            await asyncio.wait_for(producer.start(), START_SECONDS)
        except Exception:
            logger.exception("transactional producer did not start",
                             extra={"partition": str(partition)})
            await _stop_quietly(producer)
            return None
        except BaseException:
            await _stop_quietly(producer)
            raise
        return producer


def _result(task: asyncio.Future[AIOKafkaProducer | None]) -> AIOKafkaProducer | None:
    if task.cancelled() or task.exception() is not None:
        return None
    return task.result()


async def _stop_quietly(producer: AIOKafkaProducer) -> None:
    try:
        await background.within(STOP_SECONDS, producer.stop())
    except TimeoutError:
        # Stuck in a transaction a dead broker never answered: the next producer with
        # its transactional id fences it and aborts that transaction.
        logger.warning("producer did not stop in %ss; abandoned", STOP_SECONDS)
    except (KafkaError, OSError):
        logger.warning("producer did not stop cleanly", exc_info=True)


class Handover(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka is untyped
    """Called by the consumer around a rebalance.

    Revoked: with `batch_lock` held (no share of a batch starts meanwhile), waits for the
    shares in flight to commit or abort (`settle`), so the next owner reads up-to-date
    committed offsets, drops the records taken but not started (`forget`), then closes
    those producers.
    Assigned (exactly once): pauses the partitions and marks them for the stage's loop,
    which (`take_over`) starts each one's producer, then seeks it to its committed
    offset, read only after `init_transactions` has waited out the former owner's last
    transaction, and resumes it."""

    def __init__(self, consumer: AIOKafkaConsumer, *, batch_lock: asyncio.Lock,
                 settle: Callable[[], Awaitable[None]],
                 forget: Callable[[set[TopicPartition]], None],
                 producers: PartitionProducers | None) -> None:
        self._consumer = consumer
        self._batch_lock = batch_lock
        self._settle = settle
        self._forget = forget
        self._producers = producers

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        async with self._batch_lock:  # no share starts meanwhile
            await self._settle()
            self._forget(revoked)
            if self._producers is not None:
                await self._producers.close(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        if self._producers is None or not assigned:
            return
        self._consumer.pause(*assigned)
        self._producers.expect(assigned)

    def without_producer(self) -> set[TopicPartition]:
        """Assigned partitions waiting for their producer."""
        if self._producers is None:
            return set()
        return self._producers.to_open(self._consumer.assignment())

    async def take_over(self, partitions: Iterable[TopicPartition]) -> None:
        """Start the partitions' producers, seek to the committed offsets, resume.
        The caller holds `batch_lock`, so no revocation runs meanwhile."""
        assert self._producers is not None
        opened = await self._producers.open(partitions)
        ready = []
        for partition in sorted(opened):
            try:
                offset = await asyncio.wait_for(self._consumer.committed(partition),
                                                START_SECONDS)
            except (KafkaError, TimeoutError):
                logger.exception("committed offset not read",
                                 extra={"partition": str(partition)})
                await self._producers.failed(partition)
                continue
            if partition not in self._consumer.assignment():
                await self._producers.close([partition])  # the group rebalanced meanwhile
                continue
            if offset is not None:
                self._consumer.seek(partition, offset)
            ready.append(partition)
        self._consumer.resume(*ready)
