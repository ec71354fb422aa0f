"""A stage that only records gathers what arrives meanwhile into one batch (one store
transaction and one offset commit), on a real broker."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence

import pytest
from aiokafka import AIOKafkaProducer

from services.core import envelope, kafka
from services.core.settings import Settings
from services.core.stage import RECORDING_GATHER_SECONDS, StageRunner
from tests.conftest import unique
from tests.integration.test_stages import publish, segmented_event

# Long enough that records published once the gathering began are surely fetched in it.
TEST_GATHER_SECONDS = 10.0


class Recorded:
    """A recording transform (as the metrics' and the router's trackers are): the ticket
    ids of each batch it finished."""

    def __init__(self) -> None:
        self.in_batch: list[str] = []
        self.batches: list[list[str]] = []

    async def prefetch(self, events: Sequence[envelope.Event]) -> None:
        self.in_batch = []

    async def __call__(self, event: envelope.Event) -> list[kafka.Output]:
        self.in_batch.append(str(event.ticket_id))
        return []

    async def finish_batch(self) -> None:
        self.batches.append(self.in_batch)

    @property
    def recorded(self) -> int:
        return sum(len(batch) for batch in self.batches)


@pytest.fixture
async def producer(kafka_bootstrap: str) -> AsyncIterator[AIOKafkaProducer]:
    started = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await started.start()
    yield started
    await started.stop()


async def until(condition: Callable[[], bool], *, within: float = 60.0) -> None:
    async with asyncio.timeout(within):
        while not condition():  # noqa: ASYNC110 - polling another task's state
            await asyncio.sleep(0.02)


class TestRecordingStageGathers:
    async def test_records_arriving_while_it_gathers_join_the_first_ones_batch(
            self, kafka_bootstrap: str, producer: AIOKafkaProducer) -> None:
        settings = Settings(kafka_bootstrap_servers=kafka_bootstrap)
        source = unique("events")
        await kafka.ensure_topics(settings, [source])
        recorded = Recorded()
        runner = StageRunner(settings, name=unique("recorder"), source_topic=source,
                             group_id=unique("recorder"), transform=recorded,
                             publishes=False)
        assert runner.loop._gather_seconds == RECORDING_GATHER_SECONDS
        runner.loop._gather_seconds = TEST_GATHER_SECONDS
        first, *later = [segmented_event("retail") for _ in range(3)]
        await runner.start()
        try:
            await publish(producer, source, first)
            await until(runner.loop._batch_lock.locked)  # gathering, the first in hand
            for event in later:
                await publish(producer, source, event)
            await until(lambda: recorded.recorded >= 3)
        finally:
            await runner.stop()
        assert recorded.batches == [[str(e.ticket_id) for e in (first, *later)]]
