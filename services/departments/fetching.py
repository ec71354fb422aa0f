"""Taking a department's records off the consumer, past any the Kafka client cannot read.

A record the client cannot decode (a header name that is not UTF-8, a batch failing its
checksum) raises out of every fetch of its partition, and takes down the records that
fetch took from the other partitions. Its lanes are then read again from where the
tool stands, a record at a time, until each is read to where it ended at that moment;
the record the client cannot read is handed on as a `faults.UnreadableRecord`, at its
offset, and read past, as the stages do (`pipeline.StageLoop._take_carefully`).
"""

from __future__ import annotations

import logging

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

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

    def forget(self, partitions: set[TopicPartition]) -> None:
        """Drop what is known of partitions the group took away: where this reader
        stood in one is no longer where its next record is (another reader may have
        read and committed past it)."""
        for partition in partitions:
            self._taken_to.pop(partition, None)
            self._careful.pop(partition, None)

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
        return [record for records in fetched.values() for record in self._took(records)]

    def _took(self, records: list[ConsumerRecord]) -> list[ConsumerRecord]:
        if records:
            last = records[-1]
            self._taken_to[TopicPartition(last.topic, last.partition)] = last.offset + 1
        return records

    async def _read_again_carefully(self, error: BaseException) -> None:
        """Seek every partition back to its next record to take (the records the lost
        fetch took are read again), and read those with records to read a record at
        a time, up to where each ends now."""
        logger.error("a fetched record cannot be read; reading the lanes again a record"
                     " at a time", extra={"error_class": type(error).__name__})
        partitions = list(self._consumer.assignment())
        ends = await self._consumer.end_offsets(partitions)
        for partition in partitions:
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
        taken: list[ConsumerRecord] = []
        for partition, end in list(self._careful.items()):
            records: list[ConsumerRecord] = []
            try:
                if partition in self._consumer.assignment():
                    records = (await self._consumer.getmany(
                        partition, timeout_ms=faults.CAREFUL_WAIT_MS, max_records=1)
                               ).get(partition, [])
            except faults.UNREADABLE as error:
                offset = await faults.unreadable_offset(self._consumer, partition)
                records = [faults.unreadable_record(partition, offset, error)]
                if partition in self._consumer.assignment():
                    self._consumer.seek(partition, offset + 1)
            taken.extend(self._took(records))
            if partition not in self._consumer.assignment():
                self._careful.pop(partition)  # its next owner reads it from its commit
            elif not records or await self._consumer.position(partition) >= end:
                self._careful.pop(partition)
        return taken
