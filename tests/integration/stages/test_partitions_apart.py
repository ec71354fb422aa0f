"""Each partition's share of a stage's batch goes on by itself: a partition whose
transaction is held up does not hold up the others, which are fetched, processed and
committed meanwhile; the held share is committed once it can go on, exactly once."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from prometheus_client import REGISTRY

from services.core import envelope, kafka
from services.core.settings import Settings
from services.core.stage import StageRunner
from tests.conftest import read_topic, unique
from tests.integration.stages.stage_records import owning_every_partition, segmented_event


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



class Targets:
    """Where a test stage forwards each ticket: partition 0's to a topic of their own.
    The share held by the test keeps its transaction open, and a `read_committed`
    reader sees nothing past an open transaction's first record on a partition (the
    last stable offset): the other partitions' tickets, on the same target partition,
    would look held up when they are not."""

    def __init__(self, prefix: str) -> None:
        self.held, self.others = unique(f"{prefix}-held"), unique(f"{prefix}-target")

    def __iter__(self) -> Iterator[str]:
        return iter((self.held, self.others))

    def forward(self, event: envelope.Event) -> list[kafka.Output]:
        ticket_id = event.ticket_id or ""
        topic = self.held if ticket_id.startswith("p0-") else self.others
        return [kafka.Output(topic, ticket_id, event)]


async def held_stage(settings: Settings, monkeypatch: pytest.MonkeyPatch, name: str
                     ) -> tuple[str, Targets, HeldPartition, StageRunner]:
    """A stage forwarding its tickets (`Targets`), its source partition 0's transactions
    held (`HeldPartition`); not started."""
    source, targets, group = unique(f"{name}-source"), Targets(name), unique(name)
    await kafka.ensure_topics(settings, [source, *targets])
    held = HeldPartition(monkeypatch, f"{group}-{source}-0")

    async def forward(event: envelope.Event) -> list[kafka.Output]:
        return targets.forward(event)

    runner = StageRunner(settings, name=name, source_topic=source, group_id=group,
                         transform=forward)
    return source, targets, held, runner


async def forwarding_stage(settings: Settings, name: str) -> tuple[str, str, StageRunner]:
    """A stage forwarding its source's tickets to one target topic; not started."""
    source, target, group = unique(f"{name}-source"), unique(f"{name}-target"), unique(name)
    await kafka.ensure_topics(settings, [source, target])

    async def forward(event: envelope.Event) -> list[kafka.Output]:
        return [kafka.Output(target, event.ticket_id or "", event)]

    return source, target, StageRunner(settings, name=name, source_topic=source,
                                       group_id=group, transform=forward)


async def publish_to(producer: AIOKafkaProducer, topic: str, partition: int) -> str:
    event = segmented_event("government", unique(f"p{partition}"))
    await producer.send_and_wait(topic, envelope.to_value(event), partition=partition,
                                 headers=envelope.to_headers(event))
    assert event.ticket_id is not None
    return event.ticket_id


async def test_a_held_partition_does_not_hold_up_the_others(
        stage_settings: Settings, raw_producer: AIOKafkaProducer,
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert stage_settings.delivery == "exactly_once"
    assert stage_settings.kafka_topic_partitions >= 2
    source, targets, held, runner = await held_stage(stage_settings, monkeypatch, "apart")
    await runner.start()
    try:
        await owning_every_partition(runner, stage_settings.kafka_topic_partitions)
        first = await publish_to(raw_producer, source, 0)
        await asyncio.wait_for(held.entered.wait(), 60)
        # Published only now, so fetched while partition 0's transaction is held.
        second = await publish_to(raw_producer, source, 1)
        meanwhile = await read_topic(stage_settings.kafka_bootstrap_servers, targets.others,
                                     until=1, within=30)
        assert [event.ticket_id for event, _ in meanwhile] == [second]
        held.released.set()
        both = await read_topic(stage_settings.kafka_bootstrap_servers, *targets, until=2,
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
        await owning_every_partition(runner, stage_settings.kafka_topic_partitions)
        sent = [await publish_to(raw_producer, source, 0)]
        await asyncio.wait_for(failing.entered.wait(), 60)
        sent += [await publish_to(raw_producer, source, 0) for _ in range(5)]
        # The scenario: the later five in hand behind the held share.
        assert await _records_in_hand(runner, 0, at_least=5) == 5
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
    source, targets, held, runner = await held_stage(stage_settings, monkeypatch, "backlog")
    runner.loop._max_batch = 5
    runner.loop.transaction_timeout_seconds = 300  # held past the reads below
    await runner.start()
    try:
        await owning_every_partition(runner, stage_settings.kafka_topic_partitions)
        backlog = [await publish_to(raw_producer, source, 0)]
        await asyncio.wait_for(held.entered.wait(), 60)
        backlog += [await publish_to(raw_producer, source, 0) for _ in range(12)]
        # The scenario: partition 0's bound of records in hand full.
        assert await _records_in_hand(runner, 0, at_least=5) >= 5
        other = await publish_to(raw_producer, source, 1)
        meanwhile = await read_topic(stage_settings.kafka_bootstrap_servers, targets.others,
                                     until=1, within=30)
        assert [event.ticket_id for event, _ in meanwhile] == [other]
        held.released.set()
        everything = await read_topic(stage_settings.kafka_bootstrap_servers, *targets,
                                      until=len(backlog) + 1, within=60)
    finally:
        held.released.set()
        await runner.stop()
    by_partition_zero = [event.ticket_id for event, _ in everything
                         if event.ticket_id != other]
    assert sorted(by_partition_zero) == sorted(backlog)  # each once
    assert len(everything) == len(backlog) + 1


async def test_records_taken_just_before_their_partition_is_revoked_are_not_kept(
        stage_settings: Settings, raw_producer: AIOKafkaProducer,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A fetch can end with records just before a rebalance revokes their partition, the
    loop not yet back to take them: they are not kept in hand (their next owner, this
    instance too, reads them from the committed offset), so no share of them starts."""
    source, _, runner = await forwarding_stage(stage_settings, "stale")
    original = AIOKafkaConsumer.getmany
    revoked: set[TopicPartition] = set()
    fetches_after = asyncio.Event()

    async def getmany(consumer: AIOKafkaConsumer, *partitions: TopicPartition,
                      **kwargs: Any) -> dict[TopicPartition, list[Any]]:
        if consumer is not runner._consumer:
            return await original(consumer, *partitions, **kwargs)  # type: ignore[no-any-return]
        if revoked:
            fetches_after.set()  # the loop is back for the next fetch
        records: dict[TopicPartition, list[Any]] = await original(consumer, *partitions,
                                                                   **kwargs)
        if records and not revoked:
            # The rebalance listener's turn comes before the loop's.
            revoked.update(records)
            asyncio.get_running_loop().call_soon(runner.loop._forget, set(records))
        return records

    monkeypatch.setattr(AIOKafkaConsumer, "getmany", getmany)
    await runner.start()
    try:
        await owning_every_partition(runner, stage_settings.kafka_topic_partitions)
        await publish_to(raw_producer, source, 0)
        await asyncio.wait_for(fetches_after.wait(), 60)
        in_hand = dict(runner.loop._pending)
        shares = dict(runner.loop._in_flight)
        processed = runner.loop.processed
    finally:
        await runner.stop()
    assert revoked
    assert not in_hand and not shares and processed == 0


async def test_records_a_fetch_takes_after_a_revocation_are_kept(
        stage_settings: Settings, raw_producer: AIOKafkaProducer,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A fetch that was still waiting when a revocation came takes the next assignment's
    records (aiokafka waits for it): those are processed, not dropped as taken before."""
    source, target, runner = await forwarding_stage(stage_settings, "kept")
    original = AIOKafkaConsumer.getmany
    ready, sent = asyncio.Event(), []

    async def getmany(consumer: AIOKafkaConsumer, *partitions: TopicPartition,
                      **kwargs: Any) -> dict[TopicPartition, list[Any]]:
        if consumer is not runner._consumer or sent or not ready.is_set():
            return await original(consumer, *partitions, **kwargs)  # type: ignore[no-any-return]
        # The rebalance listener's turn while this fetch waits; the fetch then takes
        # the record published meanwhile.
        runner.loop._forget(consumer.assignment())
        sent.append(await publish_to(raw_producer, source, 0))
        records: dict[TopicPartition, list[Any]] = {}
        for _ in range(150):
            records = await original(consumer, *partitions, **kwargs)
            if records:
                break
        return records

    monkeypatch.setattr(AIOKafkaConsumer, "getmany", getmany)
    await runner.start()
    try:
        await owning_every_partition(runner, stage_settings.kafka_topic_partitions)
        ready.set()
        published = await read_topic(stage_settings.kafka_bootstrap_servers, target,
                                     until=1, within=60)
    finally:
        await runner.stop()
    assert sent and [event.ticket_id for event, _ in published] == sent


async def test_partitions_each_holding_a_full_share_are_not_fetched_further(
        stage_settings: Settings, raw_producer: AIOKafkaProducer,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Every partition holds a full share in hand (`_max_batch` records) and none can
    start (their producers not started, say): the stage fetches nothing more until one
    can; it does not ask for every partition's records (a fetch naming no partition)."""
    source, _, runner = await forwarding_stage(stage_settings, "full")
    partitions = stage_settings.kafka_topic_partitions
    most = runner.loop._max_batch = 2
    for partition in range(partitions):
        for _ in range(3 * most):
            await publish_to(raw_producer, source, partition)
    unnamed: list[tuple[TopicPartition, ...]] = []  # fetches naming no partition
    original_getmany = AIOKafkaConsumer.getmany

    async def getmany(consumer: AIOKafkaConsumer, *wanted: TopicPartition,
                      **kwargs: Any) -> dict[TopicPartition, list[Any]]:
        if consumer is runner._consumer and not wanted:
            unnamed.append(wanted)
        return await original_getmany(consumer, *wanted, **kwargs)  # type: ignore[no-any-return]

    original_take, takes_while_full = runner.loop._take, asyncio.Semaphore(0)

    async def take() -> None:
        await original_take()
        assigned = runner._consumer.assignment()
        if len(assigned) == partitions and all(
                len(runner.loop._pending.get(partition, ())) >= most
                for partition in assigned):
            takes_while_full.release()

    monkeypatch.setattr(AIOKafkaConsumer, "getmany", getmany)
    monkeypatch.setattr(runner.loop, "_take", take)
    monkeypatch.setattr(runner.loop, "_producer_for", lambda _partition: False)
    await runner.start()
    try:
        for _ in range(5):  # the loop comes round five times with every partition full
            await asyncio.wait_for(takes_while_full.acquire(), 60)
        in_hand = {partition: len(records)
                   for partition, records in runner.loop._pending.items()}
    finally:
        await runner.stop()
    assert unnamed == []
    assert len(in_hand) == partitions
    assert all(most <= count < 2 * most for count in in_hand.values()), in_hand


async def test_records_taken_while_a_share_is_in_flight_go_on_together_in_the_next(
        stage_settings: Settings, raw_producer: AIOKafkaProducer,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A partition's records fetched while its share's transaction is open make up its
    next share: one transaction for them all, which `routing_stage_share_records` counts
    (what ops read to see how full a stage's transactions are)."""
    source, targets, held, runner = await held_stage(stage_settings, monkeypatch, "together")
    shares_before = _share_samples("together")
    await runner.start()
    try:
        await owning_every_partition(runner, stage_settings.kafka_topic_partitions)
        sent = [await publish_to(raw_producer, source, 0)]
        await asyncio.wait_for(held.entered.wait(), 60)
        sent += [await publish_to(raw_producer, source, 0) for _ in range(4)]
        # The scenario: the later four in hand behind the held share.
        assert await _records_in_hand(runner, 0, at_least=4) == 4
        held.released.set()
        published = await read_topic(stage_settings.kafka_bootstrap_servers, targets.held,
                                     until=len(sent), within=60)
    finally:
        held.released.set()
        await runner.stop()
    assert sorted(event.ticket_id for event, _ in published) == sorted(sent)
    shares, records = (after - before for after, before
                       in zip(_share_samples("together"), shares_before, strict=True))
    assert (shares, records) == (2, 5)


async def _records_in_hand(runner: StageRunner, partition: int, *, at_least: int) -> int:
    """How many of the partition's records the stage's loop holds, once it holds
    `at_least` or after 30 s."""
    def in_hand() -> int:
        return sum(len(records) for held, records in runner.loop._pending.items()
                   if held.partition == partition)
    for _ in range(300):
        if in_hand() >= at_least:
            break
        await asyncio.sleep(0.1)
    return in_hand()


def _share_samples(stage: str) -> tuple[float, float]:
    """The stage's shares so far, and the records they held."""
    def sample(name: str) -> float:
        return REGISTRY.get_sample_value(name, {"stage": stage}) or 0.0
    return (sample("routing_stage_share_records_count"),
            sample("routing_stage_share_records_sum"))
