"""faults.fetch_past_unreadable with a consumer that fails as aiokafka 0.14 does: a fetch
of several partitions drains them in turn, moving each one's position, and raises at a
record it cannot read, losing what it had drained of the others; that record's
partition keeps its position, and the client's fetch state says where the record stands.
No broker: the cases a real one cannot be made to show on demand (which partition is
drained first, a position never known, a partition taken away)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.errors import IllegalStateError

from services.core import faults

P0, P1 = TopicPartition("t", 0), TopicPartition("t", 1)
BAD = object()  # a record the client cannot read


def record(partition: TopicPartition, offset: int) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(partition.topic, partition.partition, offset, 0, 0, None,
                          f"{partition.partition}:{offset}".encode(), None, 0, 0, ())


class Consumer:
    def __init__(self, logs: dict[TopicPartition, list[object]]) -> None:
        self.logs = logs
        self.positions = dict.fromkeys(logs, 0)
        self.unassigned: set[TopicPartition] = set()
        self.unknown: set[TopicPartition] = set()  # positions never answered
        self._fetcher = SimpleNamespace(_records={})

    def assignment(self) -> set[TopicPartition]:
        return set(self.logs) - self.unassigned

    async def position(self, partition: TopicPartition) -> int:
        if partition in self.unknown:
            await asyncio.Event().wait()  # the broker does not answer
        if partition in self.unassigned:
            raise IllegalStateError("not assigned")
        return self.positions[partition]

    def seek(self, partition: TopicPartition, offset: int) -> None:
        if partition in self.unassigned:
            raise IllegalStateError("not assigned")
        self.positions[partition] = offset

    async def getmany(self, *partitions: TopicPartition, timeout_ms: int = 0,
                      max_records: int | None = None) -> dict[TopicPartition, list[Any]]:
        drained: dict[TopicPartition, list[Any]] = {}
        # P1 first, as the client's fetch buffer may hold it first.
        for partition in sorted(partitions or self.assignment(), key=lambda p: -p.partition):
            taken: list[Any] = []
            offset = self.positions[partition]
            while offset < len(self.logs[partition]):
                if max_records is not None and len(taken) >= max_records:
                    break
                if self.logs[partition][offset] is BAD:
                    self._fetcher._records[partition] = SimpleNamespace(
                        _partition_records=SimpleNamespace(next_fetch_offset=offset))
                    raise UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")
                taken.append(record(partition, offset))
                offset += 1
            self.positions[partition] = offset
            if taken:
                drained[partition] = taken
        return drained


def offsets(fetched: dict[TopicPartition, list[Any]]) -> dict[int, list[tuple[int, bool]]]:
    return {p.partition: [(r.offset, isinstance(r, faults.UnreadableRecord)) for r in records]
            for p, records in fetched.items()}


async def test_the_records_drained_with_it_are_read_again_and_it_is_read_past() -> None:
    consumer = Consumer({P0: [1, 2, BAD, 4], P1: [1, 2, 3]})
    first = await faults.fetch_past_unreadable(consumer, timeout_ms=10)  # type: ignore[arg-type]
    assert offsets(first) == {0: [(0, False), (1, False), (2, True)],
                              1: [(0, False), (1, False), (2, False)]}
    rest = await faults.fetch_past_unreadable(consumer, timeout_ms=10)  # type: ignore[arg-type]
    assert offsets(rest) == {0: [(3, False)]}
    assert await faults.fetch_past_unreadable(consumer, timeout_ms=10) == {}  # type: ignore[arg-type]


async def test_a_position_not_known_leaves_its_partition_out_and_returns() -> None:
    consumer = Consumer({P0: [1, 2], P1: [1]})
    consumer.unknown = {P0}
    async with asyncio.timeout(5):
        fetched = await faults.fetch_past_unreadable(consumer, timeout_ms=10)  # type: ignore[arg-type]
    assert offsets(fetched) == {1: [(0, False)]}
    consumer.unknown = {P0, P1}
    async with asyncio.timeout(5):
        assert await faults.fetch_past_unreadable(consumer, timeout_ms=10) == {}  # type: ignore[arg-type]


async def test_a_partition_taken_away_meanwhile_is_not_read() -> None:
    consumer = Consumer({P0: [1, BAD], P1: [1, 2]})
    original = consumer.seek

    def seek(partition: TopicPartition, offset: int) -> None:
        consumer.unassigned.add(P1)  # taken away as the fetch is read again
        original(partition, offset)

    consumer.seek = seek  # type: ignore[method-assign]
    fetched = await faults.fetch_past_unreadable(consumer, timeout_ms=10)  # type: ignore[arg-type]
    assert 1 not in offsets(fetched)
    assert offsets(fetched)[0] == [(0, False), (1, True)]


@pytest.mark.parametrize("size", [faults.CAREFUL_RECORDS + 5])
async def test_a_long_partition_is_read_carefully_a_stretch_at_a_time(size: int) -> None:
    consumer = Consumer({P0: [*range(size), BAD], P1: [BAD]})
    seen: list[tuple[int, int, bool]] = []
    async with asyncio.timeout(30):
        while len(seen) < size + 2:
            fetched = await faults.fetch_past_unreadable(consumer, timeout_ms=1)  # type: ignore[arg-type]
            seen += [(p, o, u) for p, read in offsets(fetched).items() for o, u in read]
    assert sorted(seen) == sorted([(0, n, False) for n in range(size)]
                                  + [(0, size, True), (1, 0, True)])
