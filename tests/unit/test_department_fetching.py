"""The department tool's careful re-read (`fetching.Records`, after a record the Kafka
client cannot read) when the consumer group takes partitions away in the middle of it:
another agent joining or leaving. The interleaving (a rebalance while one partition's
record is awaited) cannot be timed on a real broker, so a scripted consumer stands in
for aiokafka's here; the read on a real broker, with a real rebalance, is
tests/integration/test_department_queue.py."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.errors import IllegalStateError

from services.departments import fetching

P0 = TopicPartition("dept.care", 0)
P1 = TopicPartition("dept.care", 1)


def record(partition: TopicPartition, offset: int) -> ConsumerRecord:
    return ConsumerRecord(partition.topic, partition.partition, offset, timestamp=0,
                          timestamp_type=0, key=None, value=b"{}", checksum=None,
                          serialized_key_size=-1, serialized_value_size=2, headers=())


class ScriptedConsumer:
    """Both partitions assigned, ten records each; the first fetch meets an unreadable
    record; `on_fetch` runs while a partition's fetch is awaited (a rebalance)."""

    def __init__(self) -> None:
        self.assigned = {P0, P1}
        self.positions = {P0: 0, P1: 0}
        self.failed_once = False
        self.on_fetch: Callable[[TopicPartition], None] = lambda partition: None

    def assignment(self) -> set[TopicPartition]:
        return set(self.assigned)

    async def getmany(self, *partitions: TopicPartition, timeout_ms: int,
                      max_records: int | None = None) -> dict[TopicPartition, Any]:
        if not self.failed_once:
            self.failed_once = True
            raise UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")
        [partition] = partitions
        self.on_fetch(partition)
        if partition not in self.assigned:
            return {}
        offset = self.positions[partition]
        self.positions[partition] = offset + 1
        return {partition: [record(partition, offset)]}

    async def end_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {partition: 10 for partition in partitions}

    async def committed(self, partition: TopicPartition) -> int:
        return 0

    def seek(self, partition: TopicPartition, offset: int) -> None:
        self.positions[partition] = offset

    async def position(self, partition: TopicPartition) -> int:
        if partition not in self.assigned:
            raise IllegalStateError(f"No current assignment for partition {partition}")
        return self.positions[partition]


async def reading_carefully(consumer: ScriptedConsumer) -> fetching.Records:
    records = fetching.Records(consumer)  # type: ignore[arg-type,unused-ignore]  # a stand-in
    assert await records.take(timeout_ms=100) == []
    assert records.reading_carefully
    return records


class TestAPartitionTakenAwayDuringACarefulRead:
    async def test_a_record_fetched_before_is_not_handed_on_and_the_read_goes_on(
            self) -> None:
        """P0's record is fetched, then while P1's is awaited the group takes both
        away and gives back P1 only: P0's record (its next owner reads it from the
        group's commit) is not handed on, P1's fetched after the rebalance is, and
        nothing raises."""
        consumer = ScriptedConsumer()
        records = await reading_carefully(consumer)

        def rebalance(partition: TopicPartition) -> None:
            if partition == P1:
                records.forget({P0, P1})
                consumer.assigned = {P1}
        consumer.on_fetch = rebalance

        taken = await records.take(timeout_ms=100)

        assert [(r.partition, r.offset) for r in taken] == [(1, 0)]
        assert not records.reading_carefully  # P1 forgotten: read as usual again

    async def test_a_partition_taken_away_as_its_position_is_read_ends_its_careful_read(
            self) -> None:
        """P0's record is fetched, and the group takes P0 away while its position is
        awaited (which then raises IllegalStateError): the record is not handed on, P0
        is read carefully no more, and P1 goes on to its end."""
        consumer = ScriptedConsumer()
        records = await reading_carefully(consumer)
        read_position = consumer.position

        async def position_lost(partition: TopicPartition) -> int:
            if partition == P0 and P0 in consumer.assigned:
                consumer.assigned.discard(P0)
                records.forget({P0})
            return await read_position(partition)
        consumer.position = position_lost  # type: ignore[method-assign]

        taken = await records.take(timeout_ms=100)

        assert [(r.partition, r.offset) for r in taken] == [(1, 0)]
        assert records.reading_carefully  # P1 has records to its end still
        taken = await records.take(timeout_ms=100)
        assert [(r.partition, r.offset) for r in taken] == [(1, 1)]
