"""Each partition's share of a stage's batch goes on by itself: a partition whose
transaction is held up does not hold up the others, which are fetched, processed and
committed meanwhile; the held share is committed once it can go on, exactly once."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from services.core import envelope, kafka
from services.core.settings import Settings
from services.core.stage import StageRunner
from tests.conftest import read_topic, unique
from tests.integration.stages.stage_records import segmented_event


class HeldPartition:
    """Holds the transactions of the producer of one source partition until released."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, transactional_id: str) -> None:
        self.entered = asyncio.Event()
        self.released = asyncio.Event()
        original = AIOKafkaProducer.send_offsets_to_transaction

        async def held(producer: AIOKafkaProducer, *args: Any, **kwargs: Any) -> None:
            if producer._txn_manager.transactional_id == transactional_id:
                self.entered.set()
                await self.released.wait()
            await original(producer, *args, **kwargs)

        monkeypatch.setattr(AIOKafkaProducer, "send_offsets_to_transaction", held)


async def publish_to(producer: AIOKafkaProducer, topic: str, partition: int) -> str:
    event = segmented_event("government")
    await producer.send_and_wait(topic, envelope.to_value(event), partition=partition,
                                 headers=envelope.to_headers(event))
    assert event.ticket_id is not None
    return event.ticket_id


async def test_a_held_partition_does_not_hold_up_the_others(
        stage_settings: Settings, raw_producer: AIOKafkaProducer,
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert stage_settings.delivery == "exactly_once"
    assert stage_settings.kafka_topic_partitions >= 2
    source, target, group = unique("apart-source"), unique("apart-target"), unique("apart")
    await kafka.ensure_topics(stage_settings, [source, target])
    held = HeldPartition(monkeypatch, f"{group}-{source}-0")

    async def forward(event: envelope.Event) -> list[kafka.Output]:
        return [kafka.Output(target, event.ticket_id or "", event)]

    runner = StageRunner(stage_settings, name="apart", source_topic=source, group_id=group,
                         transform=forward)
    await runner.start()
    try:
        first = await publish_to(raw_producer, source, 0)
        await asyncio.wait_for(held.entered.wait(), 60)
        # Published only now, so fetched while partition 0's transaction is held.
        second = await publish_to(raw_producer, source, 1)
        meanwhile = await read_topic(stage_settings.kafka_bootstrap_servers, target,
                                     until=1, within=30)
        assert [event.ticket_id for event, _ in meanwhile] == [second]
        held.released.set()
        both = await read_topic(stage_settings.kafka_bootstrap_servers, target, until=2,
                                within=30)
    finally:
        held.released.set()
        await runner.stop()
    assert sorted(event.ticket_id for event, _ in both) == sorted([first, second])


class FailingOnce:
    """Holds the first transaction of one source partition's producer until released,
    then fails it (the share is rewound and retried); later transactions go through."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, transactional_id: str) -> None:
        self.entered = asyncio.Event()
        self.released = asyncio.Event()
        original = AIOKafkaProducer.send_offsets_to_transaction

        async def failing(producer: AIOKafkaProducer, *args: Any, **kwargs: Any) -> None:
            if producer._txn_manager.transactional_id == transactional_id \
                    and not self.entered.is_set():
                self.entered.set()
                await self.released.wait()
                raise RuntimeError("the held share fails")
            await original(producer, *args, **kwargs)

        monkeypatch.setattr(AIOKafkaProducer, "send_offsets_to_transaction", failing)


async def test_records_taken_behind_a_rewound_share_are_read_again_once_in_order(
        stage_settings: Settings, raw_producer: AIOKafkaProducer,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A busy partition's later records are taken from the consumer while its share is
    in flight (so that the consumer keeps fetching for every partition). When that share
    fails and is rewound, they are dropped and read again: each record is published
    once, in the partition's order."""
    source, target, group = unique("behind-source"), unique("behind-target"), unique("behind")
    await kafka.ensure_topics(stage_settings, [source, target])
    failing = FailingOnce(monkeypatch, f"{group}-{source}-0")

    async def forward(event: envelope.Event) -> list[kafka.Output]:
        return [kafka.Output(target, "one-key", event)]  # one target partition: one order

    runner = StageRunner(stage_settings, name="behind", source_topic=source, group_id=group,
                         transform=forward)
    await runner.start()
    try:
        sent = [await publish_to(raw_producer, source, 0)]
        await asyncio.wait_for(failing.entered.wait(), 60)
        sent += [await publish_to(raw_producer, source, 0) for _ in range(5)]
        held = {partition.partition: records
                for partition, records in runner.loop._pending.items()}
        for _ in range(300):  # the scenario: the later five in hand behind the held share
            if len(held.get(0, [])) == 5:
                break
            await asyncio.sleep(0.1)
            held = {partition.partition: records
                    for partition, records in runner.loop._pending.items()}
        assert len(held.get(0, [])) == 5
        failing.released.set()
        published = await read_topic(stage_settings.kafka_bootstrap_servers, target,
                                     until=len(sent), within=60)
    finally:
        failing.released.set()
        await runner.stop()
    assert [event.ticket_id for event, _ in published] == sent


async def test_a_held_partition_with_a_backlog_does_not_hold_up_the_others(
        stage_settings: Settings, raw_producer: AIOKafkaProducer,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Records in hand are bounded per partition, not in all: a held partition whose
    backlog fills its bound leaves the others fetched and processed meanwhile."""
    source, target, group = unique("backlog-source"), unique("backlog-target"), unique("backlog")
    await kafka.ensure_topics(stage_settings, [source, target])
    held = HeldPartition(monkeypatch, f"{group}-{source}-0")

    async def forward(event: envelope.Event) -> list[kafka.Output]:
        return [kafka.Output(target, event.ticket_id or "", event)]

    runner = StageRunner(stage_settings, name="backlog", source_topic=source, group_id=group,
                         transform=forward)
    runner.loop._max_batch = 5
    runner.loop.transaction_timeout_seconds = 300  # held past the reads below
    await runner.start()
    try:
        backlog = [await publish_to(raw_producer, source, 0)]
        await asyncio.wait_for(held.entered.wait(), 60)
        backlog += [await publish_to(raw_producer, source, 0) for _ in range(12)]
        for _ in range(300):  # the scenario: partition 0's bound of records in hand full
            in_hand = {p.partition: len(r) for p, r in runner.loop._pending.items()}
            if in_hand.get(0, 0) >= 5:
                break
            await asyncio.sleep(0.1)
        assert in_hand.get(0, 0) >= 5
        other = await publish_to(raw_producer, source, 1)
        meanwhile = await read_topic(stage_settings.kafka_bootstrap_servers, target,
                                     until=1, within=30)
        assert [event.ticket_id for event, _ in meanwhile] == [other]
        held.released.set()
        everything = await read_topic(stage_settings.kafka_bootstrap_servers, target,
                                      until=len(backlog) + 1, within=60)
    finally:
        held.released.set()
        await runner.stop()
    by_partition_zero = [event.ticket_id for event, _ in everything
                         if event.ticket_id != other]
    assert sorted(by_partition_zero) == sorted(backlog)  # each once
    assert len(everything) == len(backlog) + 1
