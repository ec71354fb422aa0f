"""A record the Kafka client cannot read (a header name that is not UTF-8, written with
kcat: aiokafka raises on it out of every fetch of its partition) on a topic read without
a group. The shared fetch (faults.fetch_past_unreadable) sets it aside in its place and
reads on, so the dead letters' count, listing and replay, and the followers of
announcements, do not stop at it. The dead-letter topic here is the test's own:
`tickets.dlq` is shared with the other tests, whose own readers would meet it."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from aiokafka import AIOKafkaProducer

from services.core import faults, kafka, topics
from services.core.settings import Settings
from services.metrics.kafka_watch import DeadLetterCount
from services.router import dead_letter_records, dead_letters
from tests.conftest import unique
from tests.integration.dead_letters.dead_lettering import dead_letter
from tests.unreadable_records import write_unreadable


async def a_topic_with_an_unreadable_record(settings: Settings, producer: AIOKafkaProducer
                                            ) -> str:
    """Partition 0: a, b, the unreadable record, c; partition 1: d, e."""
    topic = unique("unreadable")
    await kafka.ensure_topics(settings, [topic])
    for value in (b"a", b"b"):
        await producer.send_and_wait(topic, value, partition=0)
    await write_unreadable(settings.kafka_bootstrap_servers, topic, partition=0)
    await producer.send_and_wait(topic, b"c", partition=0)
    for value in (b"d", b"e"):
        await producer.send_and_wait(topic, value, partition=1)
    return topic


async def test_a_plain_fetch_stops_at_it_for_good(settings: Settings,
                                                  producer: AIOKafkaProducer) -> None:
    """What the readers did before: every fetch raised, the records after it unread."""
    topic = await a_topic_with_an_unreadable_record(settings, producer)
    consumer = kafka.consumer(settings, topic, group_id=None, client_id="plain")
    await consumer.start()
    try:
        with pytest.raises(faults.UNREADABLE):
            async with asyncio.timeout(30):
                while True:
                    await consumer.getmany(timeout_ms=500)
    finally:
        await consumer.stop()


async def test_the_shared_fetch_reads_past_it_in_order(settings: Settings,
                                                       producer: AIOKafkaProducer) -> None:
    topic = await a_topic_with_an_unreadable_record(settings, producer)
    consumer = kafka.consumer(settings, topic, group_id=None, client_id="careful")
    await consumer.start()
    read: dict[int, list[tuple[int, bytes | None]]] = {}
    unreadable: list[tuple[int, int]] = []
    try:
        async with asyncio.timeout(60):
            while sum(map(len, read.values())) < 6:
                batch = await faults.fetch_past_unreadable(consumer, timeout_ms=500)
                for partition, records in batch.items():
                    for record in records:
                        read.setdefault(partition.partition, []).append(
                            (record.offset, record.value))
                        if isinstance(record, faults.UnreadableRecord):
                            unreadable.append((record.partition, record.offset))
        # Read on: nothing more comes, nothing twice.
        more = await faults.fetch_past_unreadable(consumer, timeout_ms=1000)
    finally:
        await consumer.stop()
    assert read == {0: [(0, b"a"), (1, b"b"), (2, None), (3, b"c")],
                    1: [(0, b"d"), (1, b"e")]}
    assert unreadable == [(0, 2)]
    assert not any(more.values())


@pytest.fixture
async def own_dead_letters(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> str:
    topic = unique("dlq")
    await kafka.ensure_topics(settings, [topic])
    monkeypatch.setattr(topics, "DEAD_LETTERS", topic)
    return topic


async def test_the_dead_letters_are_listed_counted_and_not_replayed_past_it(
        settings: Settings, producer: AIOKafkaProducer, source_topic: str,
        own_dead_letters: str) -> None:
    before = await dead_letter(producer, source_topic, key=b"k", value=b"v1", headers=[])
    await write_unreadable(settings.kafka_bootstrap_servers, own_dead_letters,
                           partition=int(before.split(":")[0]))
    after = await dead_letter(producer, source_topic, key=b"k", value=b"v2", headers=[])

    async with asyncio.timeout(60):
        listed = await dead_letters.list_dead_letters(settings)
        filtered = await dead_letters.list_dead_letters(settings, source_topic=source_topic)
        only_unreadable = await dead_letters.list_dead_letters(
            settings, error_class=dead_letter_records.UNREADABLE)
    [bad] = [item for item in listed if item["error_class"] == "Unreadable"]
    assert bad["source_topic"] is None and bad["timestamp"] is None
    assert "cannot read this record" in bad["error"]
    assert {item["id"] for item in listed} == {before, after, bad["id"]}
    assert {item["id"] for item in filtered} == {before, after}
    assert [item["id"] for item in only_unreadable] == [bad["id"]]

    result = await dead_letters.replay(settings, dead_letter_records.Selection(
        ids=(bad["id"],)))
    assert (result.unreplayable, result.replayed) == ([bad["id"]], [])

    counter = DeadLetterCount(settings)
    stop = asyncio.Event()
    counting = asyncio.create_task(counter.run(stop))
    try:
        async with asyncio.timeout(60):
            while counter.count < 3:
                assert not counting.done(), counting
                await asyncio.sleep(0.2)
        await asyncio.sleep(1.5)  # read on: still running, nothing counted twice
        assert not counting.done()
        assert counter.count == 3
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(counting, 30)


@pytest.mark.parametrize("source", [topics.CONFIG_CHANGES, topics.CUSTOMER_EVENTS,
                                    "dept.public_sector.high", topics.DEAD_LETTERS,
                                    "orders.other-application", "__consumer_offsets"])
async def test_a_dead_letter_naming_a_topic_no_stage_reads_is_not_replayed(
        settings: Settings, producer: AIOKafkaProducer, source: str) -> None:
    """Any writer of the dead-letter topic can name a source: a replay writes only to a
    stage's input, never into a department's queue, the announcements, another
    application's topic, nor one the broker refuses (which failed the whole replay)."""
    if not source.startswith("__"):
        await kafka.ensure_topics(settings, [source])
    forged = await dead_letter(producer, source, key=b"k", value=b"v", headers=[])
    result = await dead_letters.replay(settings, dead_letter_records.Selection(
        ids=(forged,)))
    assert (result.unreplayable, result.replayed) == ([forged], [])
