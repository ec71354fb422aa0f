"""A stage's progress (`routing_stage_progress_timestamp_seconds`, which the alert
RoutingStageNotProgressing reads): it moves while the stage has nothing in hand, stands
still while the stage holds a record it does not finish, and moves again once that
record is finished. Real broker; the transform holds one ticket until released."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError
from prometheus_client import REGISTRY

from services.core import envelope, kafka, topics
from services.core.settings import Settings
from services.core.stage import StageRunner
from services.router import worker
from tests.conftest import read_topic, unique
from tests.integration.stages.stage_records import (
    TABLE,
    alter_producers,
    owning_every_partition,
    segmented_event,
)

# Longer than the stage's fetch wait (200 ms): its loop goes round several times.
SEVERAL_ROUNDS = 1.5


class HeldRouting(worker.RouteTicket):
    """Routes tickets as the router does, holding `ticket_id` until released."""

    def __init__(self, ticket_id: str) -> None:
        super().__init__(lambda: TABLE)
        self.ticket_id = ticket_id
        self.entered, self.released = asyncio.Event(), asyncio.Event()

    async def __call__(self, event: envelope.Event) -> list[kafka.Output]:
        if event.ticket_id == self.ticket_id:
            self.entered.set()
            await self.released.wait()
        return await super().__call__(event)


def reported(stage: str) -> float | None:
    return REGISTRY.get_sample_value("routing_stage_progress_timestamp_seconds",
                                     {"stage": stage})


def progress(stage: str) -> float:
    value = reported(stage)
    assert value is not None, "the stage reports no progress"
    return value


async def started(stage: str, within: float = 60.0) -> None:
    for _ in range(int(within / 0.1)):
        if reported(stage) is not None:
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the stage's loop did not start")


async def moved_on(stage: str, since: float, within: float = 30.0) -> bool:
    for _ in range(int(within / 0.1)):
        if progress(stage) > since:
            return True
        await asyncio.sleep(0.1)
    return False


async def test_progress_stands_still_while_a_record_in_hand_is_not_finished(
        stage_settings: Settings, raw_producer: AIOKafkaProducer) -> None:
    """Even while another partition's tickets are routed meanwhile: one partition
    stuck is a stage stuck."""
    name = unique("router-progress")
    held, other = segmented_event("government"), segmented_event("government")
    assert held.ticket_id is not None and other.ticket_id is not None
    routing = HeldRouting(held.ticket_id)
    runner = StageRunner(stage_settings, name=name, source_topic=topics.SEGMENTED,
                         group_id=unique("router"), transform=routing)
    await runner.start()
    try:
        await owning_every_partition(runner, stage_settings.kafka_topic_partitions)
        await started(name)
        idle = progress(name)
        assert await moved_on(name, idle), "an idle stage's progress moves"
        await send_to(raw_producer, held, partition=0)
        await asyncio.wait_for(routing.entered.wait(), 60)
        holding = progress(name)
        await send_to(raw_producer, other, partition=1)
        meanwhile = await read_topic(stage_settings.kafka_bootstrap_servers,
                                     "dept.public_sector", until=1,
                                     keep=lambda e: e.ticket_id == other.ticket_id)
        await asyncio.sleep(SEVERAL_ROUNDS)
        assert progress(name) == holding, "no progress while the record is held"
        routing.released.set()
        found = await read_topic(stage_settings.kafka_bootstrap_servers,
                                 "dept.public_sector", until=1,
                                 keep=lambda e: e.ticket_id == held.ticket_id)
        assert await moved_on(name, holding), "progress once the record is finished"
    finally:
        routing.released.set()
        await runner.stop()
    assert [event.ticket_id for event, _ in meanwhile] == [other.ticket_id]
    assert [event.ticket_id for event, _ in found] == [held.ticket_id]


async def send_to(producer: AIOKafkaProducer, event: envelope.Event, *, partition: int
                  ) -> None:
    await producer.send_and_wait(topics.SEGMENTED, envelope.to_value(event),
                                 partition=partition, headers=envelope.to_headers(event))


async def test_progress_stands_still_while_a_partition_waits_for_its_producer(
        stage_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """Exactly once, each partition's records are written by a producer of its own; a
    partition whose producer cannot start takes no records at all. Nothing is in hand,
    and yet the stage is stuck on that partition: its progress stands still."""
    settings = stage_settings.model_copy(update={"delivery": "exactly_once"})
    allowed = asyncio.Event()
    refused = 0

    def refusing(producer: AIOKafkaProducer, _settings: Settings,
                 _transactional_id: str | None) -> None:
        start = producer.start

        async def refused_until_allowed() -> None:
            nonlocal refused
            if not allowed.is_set():
                refused += 1
                raise KafkaConnectionError("refused by the test")
            await start()

        producer.start = refused_until_allowed

    alter_producers(monkeypatch, refusing)
    name = unique("router-producerless")
    runner = StageRunner(settings, name=name, source_topic=topics.SEGMENTED,
                         group_id=unique("router"), transform=worker.RouteTicket(lambda: TABLE))
    await runner.start()
    try:
        for _ in range(600):
            if runner.loop.handover.without_producer() and refused:
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("the stage was given no partition")
        stuck, tries = progress(name), refused
        await asyncio.sleep(SEVERAL_ROUNDS)
        assert refused > tries, "the loop went round, asking for the producers again"
        assert runner.loop.handover.without_producer(), "a producer started meanwhile"
        assert progress(name) == stuck, "no progress while a partition has no producer"
        allowed.set()
        assert await moved_on(name, stuck), "progress once the producers started"
        assert not runner.loop.handover.without_producer()
    finally:
        allowed.set()
        await runner.stop()
