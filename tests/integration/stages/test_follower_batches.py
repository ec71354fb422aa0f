"""A follower (off the tickets' way to their departments) has the broker hold its fetch
until `kafka_follower_fetch_min_bytes` are waiting or the fetch wait passed, so records
that arrive close together reach it in one batch, one SQL transaction, not one each."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer

from services.core import envelope, kafka
from services.core.settings import Settings
from services.core.stage import StageRunner
from tests.conftest import unique
from tests.integration.stages.stage_records import publish, segmented_event

EVENTS = 10


class CountingBatches:
    """Records events; counts the batches it was given (a Batching transform)."""

    def __init__(self) -> None:
        self.seen = 0
        self.batches = 0

    async def prefetch(self, _events: Sequence[envelope.Event]) -> None:
        pass

    async def finish_batch(self) -> None:
        self.batches += 1

    async def __call__(self, event: envelope.Event) -> list[kafka.Output]:
        self.seen += 1
        return []


async def batches_for(settings: Settings, raw_producer: AIOKafkaProducer, *,
                      follower: bool) -> int:
    source, group = unique("follow-source"), unique("follow")
    await kafka.ensure_topics(settings, [source])
    transform = CountingBatches()
    runner = StageRunner(settings, name="follow", source_topic=source, group_id=group,
                         transform=transform, publishes=False, follower=follower)
    await runner.start()
    try:
        for _ in range(600):  # consuming, its partitions assigned
            if runner.running and runner._consumer.assignment():
                break
            await asyncio.sleep(0.1)
        for _ in range(EVENTS):  # one at a time, acknowledged, within about 0.1 s
            await publish(raw_producer, source, segmented_event("government"))
            await asyncio.sleep(0.01)
        for _ in range(300):
            if transform.seen >= EVENTS:
                break
            await asyncio.sleep(0.1)
    finally:
        await runner.stop()
    assert transform.seen == EVENTS
    return transform.batches


async def test_a_follower_takes_records_arriving_together_in_few_batches(
        stage_settings: Settings, raw_producer: AIOKafkaProducer) -> None:
    settings = stage_settings.model_copy(update={
        "kafka_follower_fetch_min_bytes": 10 * 1024 * 1024, "kafka_fetch_max_wait_ms": 500})
    # Each fetch is answered at its deadline: at most two answers fall within the
    # publishing, each with at most one batch per partition.
    assert await batches_for(settings, raw_producer, follower=True) \
        <= 2 * settings.kafka_topic_partitions < EVENTS

