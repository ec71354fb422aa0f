"""Partitions handed between stage instances (rebalance, fencing) and a transaction
that does not finish: each ticket routed exactly once."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition

from services.core import envelope, kafka, topics
from services.core.settings import Settings
from services.core.stage import StageRunner
from tests.conftest import read_topic, unique
from tests.integration.stages.stage_records import (
    alter_producers,
    router_runner,
    segmented_event,
)


async def publish_to(producer: AIOKafkaProducer, event: envelope.Event,
                     partition: int | None = None) -> None:
    """Publish a segmented ticket keyed by its id (spread over the partitions)."""
    await producer.send_and_wait(topics.SEGMENTED, envelope.to_value(event),
                                 key=str(event.ticket_id).encode(), partition=partition,
                                 headers=envelope.to_headers(event))


async def owns(runner: StageRunner, *partitions: TopicPartition) -> None:
    """Wait until the runner has a transactional producer for one of the partitions."""
    producers = runner.loop.producers
    assert producers is not None
    async with asyncio.timeout(30):
        while all(producers.get(tp) is None for tp in partitions):  # noqa: ASYNC110 - polling
            await asyncio.sleep(0.1)


async def routed_once(stage_settings: Settings, sent: set[str]
                      ) -> list[tuple[envelope.Event, object]]:
    """What reached public_sector's lane of the tickets sent (every copy)."""
    return await read_topic(stage_settings.kafka_bootstrap_servers, "dept.public_sector",
                            until=len(sent), within=60, settle=3.0,
                            keep=lambda e: e.ticket_id in sent)


def assert_each_once(found: list[tuple[envelope.Event, object]], sent: set[str]) -> None:
    copies = Counter(event.ticket_id for event, _ in found)
    assert set(copies) == sent
    assert max(copies.values()) == 1


class TestHandover:
    async def test_instances_joining_and_leaving_route_each_ticket_once(
            self, stage_settings: Settings, raw_producer: AIOKafkaProducer) -> None:
        group = unique("router")
        sent: set[str | None] = set()

        async def publish_some(count: int) -> None:
            for _ in range(count):
                event = segmented_event("government")
                sent.add(event.ticket_id)
                await publish_to(raw_producer, event)

        first = router_runner(stage_settings, group)
        second = router_runner(stage_settings.model_copy(update={"instance_id": "1"}), group)
        await publish_some(40)
        await first.start()
        try:
            await publish_some(40)
            await second.start()
            await publish_some(40)
            # Which partitions the second gets depends on the member ids' order.
            await owns(second, *(TopicPartition(topics.SEGMENTED, p) for p in range(3)))
            await first.stop()
            await publish_some(40)
            found = await routed_once(stage_settings, sent)
        finally:
            await first.stop()
            await second.stop()
        assert_each_once(found, sent)

    async def test_a_fenced_partition_waits_for_the_rebalance_and_the_stage_runs_on(
            self, stage_settings: Settings, raw_producer: AIOKafkaProducer) -> None:
        group = unique("router")
        first = router_runner(stage_settings, group)
        second = router_runner(stage_settings.model_copy(update={"instance_id": "1"}), group)
        fenced_partition = TopicPartition(topics.SEGMENTED, 0)
        await first.start()
        await owns(first, fenced_partition)
        assert first.loop.producers is not None
        # What a new owner does on taking the partition over: fence the old owner.
        usurper = kafka.producer(stage_settings, client_id="usurper",
                                 transactional_id=first.loop.producers.transactional_id(
                                     fenced_partition))
        await usurper.start()
        try:
            held_back, flowing = segmented_event("government"), segmented_event("government")
            await publish_to(raw_producer, held_back, partition=0)
            await publish_to(raw_producer, flowing, partition=1)
            # The other partitions flow meanwhile. (Whether the fenced one waits until
            # the rebalance below is the broker's timing: a session timeout on a loaded
            # machine rebalances the group earlier, which is as good.)
            delivered = await read_topic(stage_settings.kafka_bootstrap_servers,
                                         "dept.public_sector", until=1, within=30,
                                         keep=lambda e: e.ticket_id == flowing.ticket_id)
            assert [event.ticket_id for event, _ in delivered] == [flowing.ticket_id]
            assert first.running
            await second.start()  # the rebalance gives partition 0 a fresh producer
            found = await read_topic(stage_settings.kafka_bootstrap_servers,
                                     "dept.public_sector", until=1, within=60, settle=3.0,
                                     keep=lambda e: e.ticket_id == held_back.ticket_id)
            assert len(found) == 1
            assert first.running
        finally:
            await usurper.stop()
            await first.stop()
            await second.stop()

    async def test_slow_producer_starts_give_each_partition_one_producer_per_instance(
            self, stage_settings: Settings, raw_producer: AIOKafkaProducer,
            monkeypatch: pytest.MonkeyPatch) -> None:
        # Starting a producer as slowly as over SASL_SSL (TLS and SCRAM handshakes), while
        # a second instance joins: no instance ever holds two live producers of one
        # transactional id (they would fence each other), and every one is stopped.
        live: Counter[tuple[str, str]] = Counter()
        most_live: Counter[tuple[str, str]] = Counter()

        def slow(producer: AIOKafkaProducer, settings: Settings,
                 transactional_id: str | None) -> None:
            key = (settings.instance_id, str(transactional_id))
            start, stop = producer.start, producer.stop

            async def slow_start() -> None:
                await asyncio.sleep(2.0)
                await start()
                live[key] += 1
                most_live[key] = max(most_live[key], live[key])

            async def counted_stop() -> None:
                if producer._closed is False and producer._sender.sender_task is not None:
                    live[key] -= 1
                await stop()

            producer.start, producer.stop = slow_start, counted_stop

        alter_producers(monkeypatch, slow)
        group = unique("router")
        sent: set[str | None] = set()
        for _ in range(30):
            event = segmented_event("government")
            sent.add(event.ticket_id)
            await publish_to(raw_producer, event)
        first = router_runner(stage_settings, group)
        second = router_runner(stage_settings.model_copy(update={"instance_id": "1"}), group)
        await first.start()
        try:
            await asyncio.sleep(1.0)  # the first instance's producers are starting
            await second.start()
            found = await routed_once(stage_settings, sent)
        finally:
            await first.stop()
            await second.stop()
        assert_each_once(found, sent)
        assert most_live and max(most_live.values()) == 1
        assert not +live  # every started producer was stopped


class TestStuckTransaction:
    async def test_a_commit_that_never_returns_is_abandoned_and_the_tickets_go_once(
            self, stage_settings: Settings, raw_producer: AIOKafkaProducer,
            monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
        # As when the broker dies mid-commit and aiokafka waits for it for good.
        stuck: list[str] = []

        def sometimes_stuck(producer: AIOKafkaProducer, _settings: Settings,
                            transactional_id: str | None) -> None:
            commit = producer.commit_transaction

            async def first_commit_hangs() -> None:
                if not stuck:
                    stuck.append(str(transactional_id))
                    await asyncio.Event().wait()
                await commit()

            producer.commit_transaction = first_commit_hangs  # type: ignore[method-assign]

        alter_producers(monkeypatch, sometimes_stuck)
        sent = set()
        for _ in range(10):
            event = segmented_event("government")
            sent.add(event.ticket_id)
            await publish_to(raw_producer, event)
        runner = router_runner(stage_settings, unique("router"))
        runner.loop.transaction_timeout_seconds = 2.0
        await runner.start()
        try:
            found = await routed_once(stage_settings, sent)
        finally:
            await runner.stop()
        copies = Counter(event.ticket_id for event, _ in found)
        assert stuck, "no commit was held up: the test tested nothing"
        assert set(copies) == sent
        assert max(copies.values()) == 1
        assert "did not finish" in caplog.text
