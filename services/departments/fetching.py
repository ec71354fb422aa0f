"""Taking a department's records off the consumer, past any the Kafka client cannot read.

A record the client cannot decode (a header name that is not UTF-8, a batch failing its
checksum) raises out of every fetch of its partition, and takes down the records that
fetch took from the other partitions. Its lanes are then read again from where the
tool stands, a record at a time, until each is read to where it ended at that moment;
the record the client cannot read is handed on as a `faults.UnreadableRecord`, at its
offset, and read past, as the stages do (`pipeline.StageLoop._take_carefully`).
"""

from __future__ import annotations

import contextlib
import logging

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import IllegalStateError

from services.core import faults

logger = logging.getLogger(__name__)


class Records:
    """The records a consumer fetches, in order per partition, one the Kafka client
    cannot read among them as a `faults.UnreadableRecord`."""

    def __init__(self, consumer: AIOKafkaConsumer) -> None:
        self._consumer = consumer
        # Where each partition's next record to take stands (none: where its
        # assignment put it, the committed offset).
        self._taken_to: dict[TopicPartition, int] = {}
        # Partitions read a record at a time, up to the offset where each ended when a
        # fetch met a record the client cannot read.
        self._careful: dict[TopicPartition, int] = {}
        # Rebalances seen, and the last one that took each partition away: a record
        # fetched before its partition was taken away is not to be handed on.
        self._rebalances = 0
        self._taken_away_at: dict[TopicPartition, int] = {}

    def forget(self, partitions: set[TopicPartition]) -> None:
        """Drop what is known of partitions the group took away: where this reader
        stood in one is no longer where its next record is (another reader may have
        read and committed past it), and a record of one fetched before is not taken."""
        self._rebalances += 1
        for partition in partitions:
            self._taken_to.pop(partition, None)
            self._careful.pop(partition, None)
            self._taken_away_at[partition] = self._rebalances

    @property
    def reading_carefully(self) -> bool:
        """Whether lanes are read again a record at a time: more is to come at once."""
        return bool(self._careful)

    async def take(self, *, timeout_ms: int) -> list[ConsumerRecord]:
        """The records fetched in `timeout_ms` (or, while reading carefully, the next
        record of each partition so read)."""
        if self._careful:
            return await self._take_carefully()
        try:
            fetched = await self._consumer.getmany(timeout_ms=timeout_ms)
        except faults.UNREADABLE as error:
            await self._read_again_carefully(error)
            return []
        return self._took([record for records in fetched.values() for record in records])

    def _took(self, records: list[ConsumerRecord]) -> list[ConsumerRecord]:
        for record in records:
            self._taken_to[TopicPartition(record.topic, record.partition)] = record.offset + 1
        return records

    async def _read_again_carefully(self, error: BaseException) -> None:
        """Seek every partition back to its next record to take (the records the lost
        fetch took are read again), and read those with records to read a record at
        a time, up to where each ends now. A partition taken away meanwhile is left to
        its next reader."""
        logger.error("a fetched record cannot be read; reading the lanes again a record"
                     " at a time", extra={"error_class": type(error).__name__})
        partitions = list(self._consumer.assignment())
        ends = await self._consumer.end_offsets(partitions)
        for partition in partitions:
            with contextlib.suppress(IllegalStateError):  # raised: taken away meanwhile
                offset = self._taken_to.get(partition)
                if offset is None:
                    offset = await self._consumer.committed(partition)
                if offset is None:
                    await self._consumer.seek_to_beginning(partition)
                    offset = await self._consumer.position(partition)
                else:
                    self._consumer.seek(partition, offset)
                if offset < ends.get(partition, 0):
                    self._careful[partition] = ends[partition]

    async def _take_carefully(self) -> list[ConsumerRecord]:
        """A record from each partition read carefully; a partition is read as usual
        again once it is read to its end, or none came in CAREFUL_WAIT_MS."""
        taken: list[tuple[int, ConsumerRecord]] = []
        for partition, end in list(self._careful.items()):
            if partition not in self._careful:
                continue  # taken away while another partition was read
            records: list[ConsumerRecord] = []
            read_to_end = True
            # IllegalStateError: taken away meanwhile; its next owner reads it from
            # the group's commit.
            with contextlib.suppress(IllegalStateError):
                try:
                    records = (await self._consumer.getmany(
                        partition, timeout_ms=faults.CAREFUL_WAIT_MS, max_records=1)
                               ).get(partition, [])
                except faults.UNREADABLE as error:
                    offset = await faults.unreadable_offset(self._consumer, partition)
                    records = [faults.unreadable_record(partition, offset, error)]
                    self._consumer.seek(partition, offset + 1)
                taken.extend((self._rebalances, record) for record in records)
                read_to_end = (not records
                               or await self._consumer.position(partition) >= end)
            if read_to_end or partition not in self._consumer.assignment():
                self._careful.pop(partition, None)
        # A partition taken away since its record was fetched is read again from the
        # group's commit, by its next owner or this reader.
        return self._took([record for fetched_at, record in taken
                           if self._taken_away_at.get(TopicPartition(
                               record.topic, record.partition), 0) <= fetched_at])
