"""The consume-transform-produce loop every pipeline stage runs.

A stage is a `Transform`: it turns one incoming event into the events it must publish.
Exactly once: each partition's share of a batch, its output and its consumed offset, is
committed in one Kafka transaction of that partition's producer (see partition_producers);
a share with nothing to publish commits its offset with the group's own commit. Each
partition's share goes on by itself: a partition's next share starts as soon as its own
last one is committed, not when the slowest partition's is, from records taken from the
consumer while it was in flight.
At least once: the loop publishes, waits until the broker has acknowledged every record,
and only then commits the offsets, so a crash replays rather than loses.

Every error is classified once (`faults`): a record that cannot be processed goes to
the dead-letter topic with its reason, and the batch goes on; an outage (broker or
database unreachable) rewinds the batch and retries it with backoff for as long as it
lasts; a transient error is retried a bounded number of times, then its record is
dead-lettered. An error that the batch as a whole met (loading or writing it) has the
batch processed again record by record, so that only the record at fault is set aside.
No single record can stop a partition.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, InvalidProducerEpoch, ProducerFenced
from prometheus_client import Counter, Gauge, Histogram

from services.core import (
    background,
    batches,
    collector,
    db,
    envelope,
    faults,
    kafka,
    partition_producers,
    progress,
    settings,
)

logger = logging.getLogger(__name__)

Transform = batches.Transform

RETRIES = Counter("routing_stage_retries_total",
                  "Batches a stage rewound to retry, by what failed", ["stage", "fault"])
WAITING = Gauge("routing_stage_waiting_for_outage",
                "1 while a stage waits for the broker or the database to answer", ["stage"])
SHARE_RECORDS = Histogram(
    "routing_stage_share_records",
    "Records of one partition a stage took together (exactly once, each attempt at"
    " them is one transaction; a retried share is counted again)",
    ["stage"], buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 500))

# Attempts at a batch that keeps failing for a reason other than an outage before its
# records are taken one at a time and those still failing dead-lettered.
MAX_ATTEMPTS = 5
MAX_RETRY_PAUSE_SECONDS = 5.0


def cap_after_overrun(size: int) -> int:
    """A partition's cap on its shares once a share of `size` records did not finish in
    its transaction's time: half of it (at least one record), so that records too slow
    to write many at a time still go through."""
    return max(1, size // 2)


def cap_after_share(cap: int, size: int, *, most: int) -> int | None:
    """The cap once a share of `size` records under it was committed: grown by a
    sixteenth (at least a record) when the share filled it, so that slow records meet a
    timeout once in a dozen shares or so, not at every other one; None (no cap) once it
    would reach `most`, a share's worth."""
    if size < cap:
        return cap
    grown = cap + max(1, cap // 16)
    return None if grown >= most else grown


@dataclass
class _Attempts:
    """How often the batch starting at `offset` failed, and how to try it next."""

    offset: int
    failures: int = 0
    isolate: bool = False


class StageLoop:
    """Runs one stage until `stop` is set; finishes the shares in hand before returning.

    A batch is taken in shares, one per partition, each going on by itself (one share
    per partition at a time, so a partition's records keep their order). Exactly once
    (with `producers`): a share is transformed and committed, with the partition's
    consumed offset, in a transaction of that partition's own producer. At least once
    (with `producer`): a share is published, acknowledged, then its offset committed."""

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
        transaction_timeout_seconds: float = settings.STAGE_TRANSACTION_SECONDS,
        max_attempts: int = MAX_ATTEMPTS,
        max_retry_pause_seconds: float = MAX_RETRY_PAUSE_SECONDS,
    ) -> None:
        if (producer is None) == (producers is None):
            raise ValueError("give either a producer (at least once) or producers")
        self.name = name
        self._consumer = consumer
        self._producer = producer
        self.producers = producers
        self._batches = batches.Batches(transform, stage=name)
        self._retry_pause = retry_pause_seconds
        self._max_batch = max_batch
        self._max_attempts = max_attempts
        self._max_retry_pause = max(max_retry_pause_seconds, retry_pause_seconds)
        self._fenced_grace = fenced_grace_seconds
        self.transaction_timeout_seconds = transaction_timeout_seconds
        self._batch_lock = asyncio.Lock()
        # Transforms keep per-batch state (Batching): one partition's records at a time,
        # unless the transform keeps it per share.
        self._transform_lock: asyncio.Lock | None = None if isinstance(
            transform, batches.SharesApart) and transform.shares_apart else asyncio.Lock()
        self.handover = partition_producers.Handover(consumer, batch_lock=self._batch_lock,
                                                     settle=self.settle, forget=self._forget,
                                                     producers=producers)
        self._in_flight: dict[TopicPartition, asyncio.Task[None]] = {}
        # Records taken from the consumer, not yet in a share, by partition; and where
        # partitions whose share failed are to be read again from (see _rewind).
        self._pending: dict[TopicPartition, list[ConsumerRecord]] = {}
        self._rewinds: dict[TopicPartition, int] = {}
        self._fetch: asyncio.Future[dict[TopicPartition, list[ConsumerRecord]]] | None = None
        self._stale: set[TopicPartition] = set()  # revoked after the fetch took records
        # Where each partition's next record to take stands: after the last taken, or
        # where it was sought (none: where its assignment put it, the committed offset).
        self._taken_to: dict[TopicPartition, int] = {}
        # Partitions read a record at a time after a fetch met a record the Kafka client
        # cannot read, with how many records were taken so (_take_carefully).
        self._careful: dict[TopicPartition, int] = {}
        self._revocations = 0  # how many revocations ran (_forget)
        # The most records a partition's share takes while its transactions ran out of
        # time (_share_done); none: a share's worth.
        self._share_cap: dict[TopicPartition, int] = {}
        self._attempts: dict[TopicPartition, _Attempts] = {}
        self._outages = 0  # consecutive batches that met an outage
        self._share_records = SHARE_RECORDS.labels(name)
        self._progress = progress.Progress(name)
        self.processed = 0

    @property
    def waiting_for_outage(self) -> bool:
        """Whether the last attempt at a batch met the broker or the database unreachable,
        or the last take-over of partitions still waiting for their producer did
        (exactly once: partition_producers.PartitionProducers.taken_over)."""
        taking_over = self.producers is not None and self.producers.waiting_for_outage \
            and bool(self.handover.without_producer())
        return self._outages > 0 or taking_over

    async def run(self, stop: asyncio.Event) -> None:
        """Each partition's share goes on by itself: a partition waits for its own
        transaction, not for the slowest of the fetch, and its next share starts as soon
        as its last is done. Returns once the shares in hand are finished."""
        # Shown from the moment this stage runs, as the property says at each scrape: set
        # at moments instead, it kept a take-over's 1 once its partitions were revoked.
        WAITING.labels(self.name).set_function(lambda: float(self.waiting_for_outage))
        collector.freeze_what_is_loaded()  # the service is started: what it holds stays
        try:
            while not stop.is_set():
                self._progress.holding(self._pending.keys() | self._in_flight.keys()
                                       | self._rewinds.keys()
                                       | self.handover.without_producer())
                await self._recover_partitions()
                await self._take()
                self._apply_rewinds()
                async with self._batch_lock:  # a revocation waits for these shares
                    for partition in self._pending.keys() - self._in_flight.keys():
                        if not self._producer_for(partition):
                            continue  # in hand until its producer is started
                        records = self._pending.pop(partition)
                        limit = self._share_cap.get(partition, self._max_batch)
                        if len(records) > limit:
                            self._pending[partition] = records[limit:]
                            records = records[:limit]
                        self._in_flight[partition] = asyncio.create_task(
                            self._share(partition, records))
        finally:
            await self.settle()

    async def settle(self) -> None:
        """Wait until every share in hand is committed or rewound."""
        while self._in_flight:
            await asyncio.gather(*self._in_flight.values(), return_exceptions=True)

    async def _take(self) -> None:
        """Take what the consumer has fetched, for every partition, busy or not, into
        `_pending`; wait for records or for a share to end.

        Taking a busy partition's records at once keeps the consumer fetching for all
        partitions: aiokafka sends no fetch to a broker while records it fetched wait to
        be taken (up to 100 ms), and a partition taken while a fetch is on its way waits
        for that fetch's answer (up to `kafka_fetch_max_wait_ms`). A partition with
        `_max_batch` records in hand is left to the consumer until its share ends; with
        every partition so, nothing is fetched."""
        shares = set(self._in_flight.values())
        assigned = self._consumer.assignment()
        room = [partition for partition in assigned
                if len(self._pending.get(partition, ())) < self._max_batch]
        if assigned and not room:
            # Wait for a share to end, or, with none running (their producers not started
            # yet), a moment: a fetch naming no partition would fetch them all.
            if shares:
                await asyncio.wait(shares, timeout=0.2, return_when=asyncio.FIRST_COMPLETED)
            else:
                await asyncio.sleep(0.2)
            return
        careful = [partition for partition in room if partition in self._careful]
        if careful:
            await self._take_carefully(careful)
            return
        self._stale.clear()
        fetch = self._fetch = asyncio.ensure_future(self._consumer.getmany(
            *room, timeout_ms=200, max_records=self._max_batch))
        try:
            await asyncio.wait({fetch, *shares}, return_when=asyncio.FIRST_COMPLETED)
            if not fetch.done() and fetch.cancel():
                # Cancelled while waiting for records: none were taken from the consumer.
                with contextlib.suppress(asyncio.CancelledError):
                    await fetch
                return
            try:
                fetched = fetch.result()
            except faults.UNREADABLE as error:
                await self._read_again_carefully(room, error)
                return
            for partition, records in fetched.items():
                # Revoked after they were taken: their next owner (this instance too)
                # reads them from the committed offset.
                if partition not in self._stale:
                    self._hold(partition, records)
        finally:
            self._fetch = None

    def _hold(self, partition: TopicPartition, records: list[ConsumerRecord]) -> None:
        if records:
            self._pending.setdefault(partition, []).extend(records)
            self._taken_to[partition] = records[-1].offset + 1

    def _seek(self, partition: TopicPartition, offset: int) -> None:
        self._consumer.seek(partition, offset)
        self._taken_to[partition] = offset

    async def _read_again_carefully(self, partitions: Iterable[TopicPartition],
                                    error: BaseException) -> None:
        """A fetch met a record the Kafka client cannot read: the fetch is lost, with the
        records it had taken from other partitions, and every fetch of that partition
        would meet it again. Each partition fetched is sought back to where its next
        record to take stands (the records in hand, and the shares under way, stay as
        they are), and read a record at a time (_take_carefully) until the record the
        client cannot read is found and set aside."""
        logger.error("stage %s: a fetched record cannot be read; reading its partitions"
                     " again a record at a time", self.name,
                     extra={"error_class": type(error).__name__})
        revocations = self._revocations
        for partition in partitions:
            offset = self._taken_to.get(partition)
            if offset is None:
                # Nothing taken since its assignment: it stood at its committed offset
                # (read after the last owner's transactions were complete).
                offset = await self._consumer.committed(partition)
            if revocations != self._revocations \
                    or partition not in self._consumer.assignment():
                continue  # revoked meanwhile: its next owner reads it from its commit
            if offset is None:
                await self._consumer.seek_to_beginning(partition)
            else:
                self._seek(partition, offset)
            self._careful[partition] = 0

    async def _take_carefully(self, partitions: Iterable[TopicPartition]) -> None:
        """A record from each partition read carefully. One the Kafka client cannot read
        is set aside, at its offset, for its share to dead-letter and commit past
        (faults.UnreadableRecord), and so in turn is each record after it in its batch,
        which the client cannot read past it either. A partition is read as usual again
        once none came in faults.CAREFUL_WAIT_MS, or a share's worth came one by one."""
        for partition in partitions:
            try:
                taken = (await self._consumer.getmany(
                    partition, timeout_ms=faults.CAREFUL_WAIT_MS, max_records=1)).get(partition, [])
            except faults.UNREADABLE as error:
                offset = await faults.unreadable_offset(self._consumer, partition)
                taken = [faults.unreadable_record(partition, offset, error)]
                if partition in self._consumer.assignment():
                    self._seek(partition, offset + 1)
                    logger.error("stage %s: a record the Kafka client cannot read is set"
                                 " aside", self.name, extra={
                                     "partition": str(partition), "offset": offset,
                                     "error_class": type(error).__name__})
            # Revoked during the wait, and given back, what came is the new assignment's
            # (aiokafka returns none of the old one's): kept, as a fetch's are.
            if partition not in self._consumer.assignment():
                self._careful.pop(partition, None)  # its next owner reads it again
                continue
            self._hold(partition, taken)
            count = self._careful.get(partition, 0) + len(taken)
            if not taken or count >= self._max_batch:
                self._careful.pop(partition, None)
            else:
                self._careful[partition] = count

    def _apply_rewinds(self) -> None:
        """Seek the partitions whose share failed back to its first record, dropping the
        records in hand after it (read again too). Done here, between fetches: a seek
        while a fetch is on its way could have that fetch's records taken, and dropped,
        from the offset sought."""
        for partition, offset in self._rewinds.items():
            self._pending.pop(partition, None)
            if partition in self._consumer.assignment():
                self._seek(partition, offset)
        self._rewinds.clear()

    def _producer_for(self, partition: TopicPartition) -> bool:
        """Whether a share of the partition can start: at least once, always; exactly
        once, once its producer is started. Until then its records stay in hand, and
        `_recover_partitions` reads them again after the producer's start (a share
        rewound meanwhile could seek back over the committed offset sought then)."""
        return self.producers is None or self.producers.get(partition) is not None

    def _share_done(self, partition: TopicPartition, size: int) -> None:
        """A share of `size` records of the partition is committed. A cap on its shares
        (halved when one did not finish in its transaction's time) grows by a sixteenth
        with each share that filled it, up to a share's worth: slow records meet a
        timeout once in a dozen shares or so, not at every other one."""
        self._attempts.pop(partition, None)
        self._progress.finished(partition)
        cap = self._share_cap.get(partition)
        if cap is not None:
            grown = cap_after_share(cap, size, most=self._max_batch)
            if grown is None:
                del self._share_cap[partition]
            else:
                self._share_cap[partition] = grown

    def _forget(self, partitions: Iterable[TopicPartition]) -> None:
        """Drop the records in hand, and the rewinds, of partitions revoked: their next
        owner reads from their committed offsets."""
        self._revocations += 1
        for partition in partitions:
            self._pending.pop(partition, None)
            self._rewinds.pop(partition, None)
            self._taken_to.pop(partition, None)
            self._careful.pop(partition, None)
            self._share_cap.pop(partition, None)
        if self._fetch is not None and self._fetch.done():
            # Taken from the consumer before the revocation, not yet in hand (a fetch
            # ending later holds the next assignment's records).
            self._stale.update(partitions)

    async def _share(self, partition: TopicPartition, records: list[ConsumerRecord]) -> None:
        """One partition's records: processed and committed, or rewound to be retried
        after a pause (the partition is not fetched meanwhile)."""
        self._share_records.observe(len(records))
        try:
            if self.producers is None:
                fault = await self._process_and_commit({partition: records})
            else:
                fault = await self._process_in_transaction(partition, records,
                                                           self.producers)
            await self._after(fault)
        finally:
            del self._in_flight[partition]

    async def _after(self, fault: faults.Fault | None) -> None:
        """Note how a share went; pause before a retry, longer while an outage lasts."""
        if fault is not None:
            RETRIES.labels(self.name, fault.value).inc()
        self._outages = self._outages + 1 if fault is faults.Fault.OUTAGE else 0
        if fault is not None:
            await asyncio.sleep(min(self._retry_pause * 2 ** max(self._outages - 1, 0),
                                    self._max_retry_pause))

    async def _process_and_commit(self, batch: dict[TopicPartition, list[ConsumerRecord]]
                                  ) -> faults.Fault | None:
        assert self._producer is not None
        try:
            for partition, records in batch.items():
                await self._process(partition, records, self._producer)
            if await self._commit(batch):
                self._batches.committed()
        except Exception as error:
            fault = self._failed(error, batch)
            for partition, records in batch.items():
                self._rewind(partition, records)
            return fault
        for partition, records in batch.items():
            self._share_done(partition, len(records))
        return None

    async def _process_in_transaction(
        self, partition: TopicPartition, records: list[ConsumerRecord],
        producers: partition_producers.PartitionProducers,
    ) -> faults.Fault | None:
        """What failed, when the records must be retried after a pause."""
        producer = producers.get(partition)
        if producer is None:  # not (or no longer) ours to process: undo the fetch
            self._rewind(partition, records)
            return None
        try:
            await background.within(self.transaction_timeout_seconds,
                                    self._transaction(partition, records, producer, producers))
        except background.Overran:
            # A broker that died mid-transaction can leave aiokafka waiting for good: give
            # the partition a fresh producer, whose start fences this one and aborts its
            # transaction, and process the records again.
            logger.error("stage %s: a transaction did not finish in %ss; starting afresh",
                         self.name, self.transaction_timeout_seconds,
                         extra={"partition": str(partition), "records": len(records)})
            # Waited out as an outage, with half the records at a time: a share whose
            # own size kept it past the timeout would otherwise be tried for ever.
            self._share_cap[partition] = cap_after_overrun(len(records))
            self._rewind(partition, records)
            self._pause(partition)
            await producers.failed(partition)
            return faults.Fault.OUTAGE
        except (ProducerFenced, InvalidProducerEpoch):
            # (InvalidProducerEpoch: a record sent after the fencing, before the commit.)
            # The partition's new owner started its producer: leave the records to it
            # and wait for the rebalance that tells this instance what it owns now.
            logger.warning("stage %s lost a partition to another instance", self.name,
                           extra={"partition": str(partition)})
            self._rewind(partition, records)
            self._pause(partition)
            await producers.fenced(partition)
            return None
        except Exception as error:
            fault = self._failed(error, {partition: records})
            self._rewind(partition, records)
            if _unusable(producer):  # a fresh one takes over (see _recover_partitions)
                self._pause(partition)
                await producers.failed(partition)
            return fault
        self._share_done(partition, len(records))
        return None

    def _failed(self, error: Exception,
                batch: dict[TopicPartition, list[ConsumerRecord]]) -> faults.Fault:
        """Note a failed attempt; past the bound, the next takes the records one by one
        and dead-letters those still failing (an outage is waited out, not counted)."""
        fault = faults.classify(error)
        # An outage is expected (the broker or the store is down): where in the code it
        # was met tells the on-call person nothing; a bug's or a record's frames do. The
        # store's code, where it gives one (SQLite's result code, PostgreSQL's SQLSTATE),
        # says what it refused without the data.
        code = db.error_code(error)
        logger.warning("stage %s failed on a batch; retrying it", self.name, extra={
            "fault": fault.value, "error_class": type(error).__name__,
            **({"store_code": code} if code else {}),
            **({} if fault is faults.Fault.OUTAGE else {"where": faults.where(error)})})
        if fault is faults.Fault.OUTAGE:
            return fault
        for partition, records in batch.items():
            attempts = self._attempts.get(partition)
            if attempts is None or attempts.offset != records[0].offset:
                attempts = self._attempts[partition] = _Attempts(records[0].offset)
            attempts.failures += 1
            attempts.isolate = attempts.isolate or attempts.failures >= self._max_attempts
        return fault

    async def _transaction(self, partition: TopicPartition, records: list[ConsumerRecord],
                           producer: AIOKafkaProducer,
                           producers: partition_producers.PartitionProducers) -> None:
        outgoing = await self._outgoing(partition, records)
        if not outgoing:
            # Nothing to publish: a transaction would carry the offset alone. The group's
            # own commit does that at a fraction of the broker's work (no markers), and a
            # member that lost the partition is refused it by the group's generation.
            if await self._commit({partition: records}):
                self._batches.committed()
            self.processed += len(records)
            return
        # Leaving the block by an exception aborts the transaction: nothing of it becomes
        # visible, and the partition's offset stays uncommitted.
        async with producer.transaction():
            await kafka.send_all(producer, outgoing)
            # The offset joins the transaction only once the records are acknowledged:
            # the broker checks each partition's first records of a transaction with
            # the transaction's coordinator, and while that coordinator is adding the
            # consumer group, it answers the check "try again" (NOT_ENOUGH_REPLICAS, to
            # clients of aiokafka's protocol version), which aiokafka retries after its
            # retry_backoff_ms (100 ms).
            await producer.send_offsets_to_transaction(
                {partition: records[-1].offset + 1}, producers.group_id)
            self.processed += len(records)
        self._batches.committed()  # in the task the share was transformed in

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
                # Back to what is not processed yet, before the committed offset is
                # sought (a partition without one keeps this position).
                for partition in missing:
                    pending = self._pending.get(partition)
                    if pending and partition not in self._rewinds:
                        self._rewinds[partition] = pending[0].offset
                self._apply_rewinds()
                for partition in missing:  # sought to their committed offsets
                    self._taken_to.pop(partition, None)
                await self.handover.take_over(missing)

    async def _process(self, partition: TopicPartition, records: list[ConsumerRecord],
                       producer: AIOKafkaProducer) -> None:
        await self._send(await self._outgoing(partition, records), records, producer)

    async def _outgoing(self, partition: TopicPartition, records: list[ConsumerRecord]
                        ) -> list[envelope.Record]:
        """The records' outputs and dead letters (the transform's side effects done)."""
        attempts = self._attempts.get(partition)
        isolate = attempts is not None and attempts.offset == records[0].offset \
            and attempts.isolate
        if self._transform_lock is None:
            return await self._batches.outgoing(records, one_by_one=isolate)
        async with self._transform_lock:
            return await self._batches.outgoing(records, one_by_one=isolate)

    async def _send(self, outgoing: list[envelope.Record], records: list[ConsumerRecord],
                    producer: AIOKafkaProducer) -> None:
        await kafka.send_all(producer, outgoing)
        self.processed += len(records)

    @property
    def dead_lettered(self) -> int:
        return self._batches.dead_lettered

    def _rewind(self, partition: TopicPartition, records: list[ConsumerRecord]) -> None:
        """Have the partition read again from the first of `records` (see
        _apply_rewinds); its share is still in flight, so nothing of it starts before."""
        if records:
            self._rewinds[partition] = records[0].offset

    def _pause(self, partition: TopicPartition) -> None:
        if partition in self._consumer.assignment():
            self._consumer.pause(partition)

    async def _commit(self, batch: dict[TopicPartition, list[ConsumerRecord]]) -> bool:
        """Whether the offsets were committed (not, after a rebalance: another member
        replays the records)."""
        try:
            await self._consumer.commit(_next_offsets(batch))
        except CommitFailedError:
            logger.warning("offset commit failed after a rebalance", extra={"stage": self.name})
            return False
        return True


def _unusable(producer: AIOKafkaProducer) -> bool:
    """Whether the producer's transactions failed for good (aiokafka has no public flag)."""
    manager = getattr(producer, "_txn_manager", None)
    return bool(manager is not None and manager.is_fatal_error())


def _next_offsets(batch: dict[TopicPartition, list[ConsumerRecord]]) -> dict[TopicPartition, int]:
    return {tp: records[-1].offset + 1 for tp, records in batch.items() if records}
