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

from services.core import at_start, background, broker_start, faults

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
        # Take-overs that failed in a row: the next waits a growing pause (as a start
        # waits for the broker), so that a broker away costs a line a pause, not dozens
        # a second.
        self._failures = background.FailuresInARow(at_start.BACKOFF)
        self._next_try = 0.0
        self.waiting_for_outage = False  # the last take-over met the broker unreachable

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

    async def open(self, partitions: Iterable[TopicPartition]
                   ) -> tuple[set[TopicPartition], dict[TopicPartition, Exception]]:
        """Start a producer for each partition (`init_transactions`: fences any former
        owner); returns the partitions that got one, and what the others' starts failed
        with. Those stay to be opened, after the pause the last failed take-over set
        (`taken_over`): none is tried before."""
        async with self._turn:
            if time.monotonic() < self._next_try:
                return set(), {}
            wanted = sorted(set(partitions) - self._producers.keys())
            started = await self._start_all(wanted)
            opened: set[TopicPartition] = set()
            failed: dict[TopicPartition, Exception] = {}
            for partition, producer in started.items():
                self._fenced_at.pop(partition, None)
                if isinstance(producer, AIOKafkaProducer):
                    self._producers[partition] = producer
                    self._to_open.discard(partition)
                    opened.add(partition)
                else:
                    failed[partition] = producer
            return opened, failed

    def taken_over(self, failed: dict[TopicPartition, Exception]) -> None:
        """Note how a take-over went: the partitions whose producer did not start or
        whose committed offset was not read, with what failed. Those failing for the
        broker's outage (faults.classify) are a WARNING without a traceback, and the
        stage is waiting for it (`waiting_for_outage`); others an ERROR with theirs.
        The next take-over waits a pause growing with the failures in a row."""
        if not failed:
            self._failures.succeeded()
            self.waiting_for_outage = False
            return
        pause = self._failures.failed()
        self._next_try = time.monotonic() + pause
        outage = {partition for partition, error in failed.items()
                  if faults.classify(error) is faults.Fault.OUTAGE}
        self.waiting_for_outage = bool(outage)
        if outage:
            logger.warning("partitions not taken over: the broker is unreachable; next try"
                           " in %g s", pause, extra={
                               "partitions": sorted(map(str, outage)),
                               "retry_in_seconds": pause,
                               "failures_in_a_row": self._failures.count})
        for partition, error in failed.items():
            if partition not in outage:
                logger.error("partition not taken over; next try in %g s", pause,
                             exc_info=error, extra={"partition": str(partition)})

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
                         ) -> dict[TopicPartition, AIOKafkaProducer | Exception]:
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

    async def _start(self, partition: TopicPartition) -> AIOKafkaProducer | Exception:
        """The partition's producer started, or what its start failed with (logged by
        `taken_over`)."""
        producer = self._new_producer(self.transactional_id(partition))
        try:
            # Bounded: a start that hangs is given up and tried again on the next pass.
            await asyncio.wait_for(producer.start(), START_SECONDS)
        except Exception as error:
            await _stop_quietly(producer)
            return error
        except BaseException:
            await _stop_quietly(producer)
            raise
        return producer


def _result(task: asyncio.Future[AIOKafkaProducer | Exception]) -> AIOKafkaProducer | None:
    if task.cancelled() or task.exception() is not None:
        return None
    started = task.result()
    return started if isinstance(started, AIOKafkaProducer) else None


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
        The caller holds `batch_lock`, so no revocation runs meanwhile. A producer's
        start meeting a mistake no wait mends (broker_start.mistake_in) is raised: the
        stage ends for good."""
        assert self._producers is not None
        opened, failed = await self._producers.open(partitions)
        for error in failed.values():
            if broker_start.mistake_in(error) is not None:
                # No wait mends it (the transactional id's ACL revoked): the stage ends
                # for good, its process restarted, as a mistake at its start does.
                raise error
        ready = []
        for partition in sorted(opened):
            try:
                offset = await asyncio.wait_for(self._consumer.committed(partition),
                                                START_SECONDS)
            except (KafkaError, TimeoutError) as error:  # the offset not read
                failed[partition] = error
                await self._producers.failed(partition)
                continue
            if partition not in self._consumer.assignment():
                await self._producers.close([partition])  # the group rebalanced meanwhile
                continue
            if offset is not None:
                self._consumer.seek(partition, offset)
            ready.append(partition)
        if opened or failed:  # tried (not within the pause after a failure)
            self._producers.taken_over(failed)
        self._consumer.resume(*ready)
