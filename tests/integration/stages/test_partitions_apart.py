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
