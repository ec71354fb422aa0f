"""The dead letters waiting (routing_dead_letters_waiting) on a real broker: those held in
the dead-letter topic with no replay marker, by stage and source topic. The dead-letter
and marker topics are the test's own (`tickets.dlq` is shared with the other tests), the
marker topic missing until the first replay makes it, as on a new cluster."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import RecordsToDelete
from prometheus_client import REGISTRY

from services.core import dead_letter_reading, kafka, topics
from services.core.settings import Settings
from services.metrics import exporter, kafka_watch
from services.metrics.kafka_watch import DeadLetterCount
from services.metrics.waiting_dead_letters import OTHER
from services.router import dead_letter_records, dead_letters
from tests import waits
from tests.conftest import unique
from tests.integration.dead_letters.dead_lettering import dead_letter

Waiting = dict[tuple[str, ...], float]


@pytest.fixture
async def own_topics(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> str:
    """Dead letters and replay markers of this test only; the marker topic not made."""
    dead_letter_topic = unique("dlq")
    await kafka.ensure_topics(settings, [dead_letter_topic])
    monkeypatch.setattr(topics, "DEAD_LETTERS", dead_letter_topic)
    monkeypatch.setattr(topics, "DEAD_LETTERS_REPLAYED", f"{dead_letter_topic}.replayed")
    return dead_letter_topic


@contextlib.asynccontextmanager
async def reading(settings: Settings) -> AsyncIterator[asyncio.Task[None]]:
    """A fresh reader, as the metrics service starts one, its figures unshown before."""
    for snapshot in (exporter.DEAD_LETTERS, exporter.DEAD_LETTERS_WAITING,
                     exporter.DEAD_LETTERS_WAITING_OLDEST):
        snapshot.replace({})
    stop = asyncio.Event()
    task = asyncio.create_task(DeadLetterCount(settings, look_seconds=0.2).run(stop))
    try:
        yield task
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def first_shown(task: asyncio.Task[None], wanted: Callable[[Waiting], bool] = bool,
                      ) -> Waiting:
    """The waiting figures once the reader shows some that `wanted` accepts."""
    async with asyncio.timeout(60):
        while not wanted(shown := exporter.DEAD_LETTERS_WAITING.values()):
            assert not task.done(), task
            await asyncio.sleep(0.1)
    return shown


def of_the_router(source_topic: str, count: int) -> Waiting:
    """Every stage with its input at 0, the router's dead letters of `source_topic`."""
    return {**{(stage, source): 0.0 for stage, source in topics.STAGE_GROUPS.items()},
            ("router", source_topic): float(count)}


async def test_replayed_ones_stop_waiting_and_a_restart_shows_the_same(
        settings: Settings, producer: AIOKafkaProducer, source_topic: str,
        own_topics: str) -> None:
    made = [await dead_letter(producer, source_topic, key=b"k", value=f"{n}".encode(),
                              headers=[], stage="router") for n in range(3)]
    async with reading(settings) as task:
        # No marker topic yet: every dead letter waits, and the count of all is shown too.
        assert await first_shown(task) == of_the_router(source_topic, 3)
        assert exporter.DEAD_LETTERS.values() == {(): 3.0}
        assert set(exporter.DEAD_LETTERS_WAITING_OLDEST.values()) == {
            ("router", source_topic)}

        # A replay while it runs makes the marker topic and lowers the figure.
        replayed = await dead_letters.replay(settings, dead_letter_records.Selection(
            ids=tuple(made[:2])))
        assert sorted(replayed.replayed) == sorted(made[:2])
        await first_shown(task, lambda shown: shown == of_the_router(source_topic, 1))
        assert exporter.DEAD_LETTERS.values() == {(): 3.0}  # held, replayed or not

    # A restart reads both topics again from the start: shown once caught up, the same.
    async with reading(settings) as task:
        assert await first_shown(task) == of_the_router(source_topic, 1)
        assert exporter.DEAD_LETTERS.values() == {(): 3.0}

        last = await dead_letters.replay(settings, dead_letter_records.Selection(
            ids=(made[2],)))
        assert last.replayed == [made[2]]
        await first_shown(task, lambda shown: shown == of_the_router(source_topic, 0))
        assert exporter.DEAD_LETTERS_WAITING_OLDEST.values() == {}


async def test_without_a_marker_topic_the_dead_letters_are_counted_and_all_wait(
        settings: Settings, producer: AIOKafkaProducer, own_topics: str,
        caplog: pytest.LogCaptureFixture) -> None:
    """What a reader of both topics with one consumer lost: with the marker topic
    missing it was never assigned, and `routing_dead_letters` was never shown. Told once
    (it may be an ACL the metrics user lacks), however often it is looked for."""
    await dead_letter(producer, unique("deleted-topic"), key=b"k", value=b"v", headers=[])
    with caplog.at_level(logging.WARNING, logger="services.core.replay_markers"):
        async with reading(settings) as task:
            waiting = await first_shown(task)
            assert waiting[(OTHER, OTHER)] == 1.0
            assert exporter.DEAD_LETTERS.values() == {(): 1.0}
            await asyncio.sleep(0.5)  # the reader looks again every 0.2 s
    told = [r for r in caplog.records if r.getMessage().startswith(
        "replay markers topic not described")]
    assert len(told) == 1
    assert "an ACL" in told[0].getMessage()
    assert topics.DEAD_LETTERS_REPLAYED not in await topic_names(settings)


async def topic_names(settings: Settings) -> set[str]:
    admin = kafka.admin(settings, client_id="test-topics")
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


async def test_dead_letters_the_retention_deleted_no_longer_wait(
        settings: Settings, producer: AIOKafkaProducer, source_topic: str,
        own_topics: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past `tickets.dlq`'s retention none can be listed or replayed: the figure drops,
    where it counted them until every metrics instance restarted (and the alert fired)."""
    monkeypatch.setattr(kafka_watch, "GONE_EVERY_SECONDS", 0.5)
    for n in range(2):
        await dead_letter(producer, source_topic, key=b"k", value=f"{n}".encode(),
                          headers=[], stage="router")
    async with reading(settings) as task:
        assert await first_shown(task) == of_the_router(source_topic, 2)
        # What the retention does: the records below each partition's end deleted.
        admin = kafka.admin(settings, client_id=unique("partitions"))
        await admin.start()
        try:
            parts = [TopicPartition(own_topics, partition) for partition in
                     (await kafka.described_partitions(admin))[own_topics]]
        finally:
            await admin.close()
        consumer = kafka.consumer(settings, group_id=None, client_id=unique("ends"))
        await consumer.start()
        try:
            ends = await consumer.end_offsets(parts)
        finally:
            await consumer.stop()
        assert sum(ends.values()) >= 2
        await deleted_below(settings, ends)
        await first_shown(task, lambda shown: shown == of_the_router(source_topic, 0))


async def test_the_dead_letters_held_are_those_read_less_those_the_retention_deleted(
        settings: Settings, producer: AIOKafkaProducer, source_topic: str,
        own_topics: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """`routing_dead_letters`, the dead letters the topic holds, forgets those its
    retention deleted as the waiting ones do (one rule), where it went on counting them
    until the metrics service restarted; one dead-lettered afterwards raises it again."""
    monkeypatch.setattr(kafka_watch, "GONE_EVERY_SECONDS", 0.5)
    made = [await dead_letter(producer, source_topic, key=b"k", value=f"{n}".encode(),
                              headers=[], stage="router") for n in range(3)]
    places = [dead_letter_reading.parse_id(dead_letter_id) for dead_letter_id in made]
    (partition,) = {partition for partition, _ in places}  # one key: one partition
    async with reading(settings) as task:
        await first_shown(task, lambda shown: shown == of_the_router(source_topic, 3))
        assert exporter.DEAD_LETTERS.values() == {(): 3.0}
        # What the retention does, to the oldest two.
        await deleted_below(settings, {TopicPartition(own_topics, partition): places[2][1]})
        await held_shown(task, 1)
        await first_shown(task, lambda shown: shown == of_the_router(source_topic, 1))

        await dead_letter(producer, source_topic, key=b"k", value=b"after", headers=[],
                          stage="router")
        await held_shown(task, 2)


async def test_new_dead_letters_are_counted_though_the_retention_deletes_more_meanwhile(
        settings: Settings, producer: AIOKafkaProducer, source_topic: str,
        own_topics: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """`routing_dead_letters_read_total`, what the alert RoutingDeadLetters watches,
    counts the two dead-lettered while the retention deletes four, where the dead letters
    held fall (4 to 2) and a rise of theirs hid them; those there at start-up, and those
    read again by a restart, are not counted."""
    monkeypatch.setattr(kafka_watch, "GONE_EVERY_SECONDS", 0.5)
    made = [await dead_letter(producer, source_topic, key=b"k", value=f"{n}".encode(),
                              headers=[], stage="router") for n in range(4)]
    (partition, last), = {dead_letter_reading.parse_id(made[-1])}
    before = read_total()
    async with reading(settings) as task:
        await held_shown(task, 4)
        assert read_total() == before  # held at start-up: none new

        await deleted_below(settings, {TopicPartition(own_topics, partition): last + 1})
        for n in range(2):
            await dead_letter(producer, source_topic, key=b"k", value=f"new {n}".encode(),
                              headers=[], stage="router")
        await waits.until(lambda: read_total() == before + 2, within=60)
        await held_shown(task, 2)

    # A restart reads the two again: counted once.
    async with reading(settings) as task:
        await held_shown(task, 2)
        assert read_total() == before + 2


def read_total() -> float:
    return REGISTRY.get_sample_value("routing_dead_letters_read_total") or 0.0


async def deleted_below(settings: Settings, firsts: dict[TopicPartition, int]) -> None:
    """The records of each partition below its offset in `firsts` deleted, as the
    topic's retention deletes them."""
    admin = kafka.admin(settings, client_id=unique("retention"))
    await admin.start()
    try:
        await admin.delete_records({part: RecordsToDelete(first)
                                    for part, first in firsts.items()})
    finally:
        await admin.close()


async def held_shown(task: asyncio.Task[None], count: int) -> None:
    """Once the reader shows `count` dead letters held (routing_dead_letters)."""
    async with asyncio.timeout(60):
        while exporter.DEAD_LETTERS.values() != {(): float(count)}:
            assert not task.done(), task
            await asyncio.sleep(0.1)
