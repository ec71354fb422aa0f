"""The department tool's read of its queue (`queue.read_queue`, as `department queue`
runs it) on a real broker: a record the Kafka client itself cannot read is reported
and read past, never the end of the read (the tool run whole, with the router, is in
tests/e2e/test_department_tool.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from services.core import envelope, kafka, tickets
from services.core.settings import Settings
from services.departments import queue
from services.router import priority
from tests.conftest import unique


def routed_event(department: str, lane: str) -> envelope.Event:
    ticket_id = unique("t")
    now = datetime.now(UTC)
    ticket = tickets.RoutedTicket(
        ticket_id=ticket_id, customer_id="c-1", subject="s", body="b", channel="email",
        received_at=now,
        segmentation=tickets.Segmentation(segment="government", rule="r", rules_version="v",
                                          customer_known=True, tier="existing"),
        routing=tickets.Routing(department=department, reason="route", table_version="t1",
                                routed_at=now, queue=lane, priority=3))
    return envelope.Event(type="ticket.routed", source="/test", ticket_id=ticket_id,
                          correlation_id=ticket_id, data=ticket.model_dump(mode="json"))


@pytest.fixture
async def producer(kafka_bootstrap: str) -> AsyncIterator[AIOKafkaProducer]:
    started = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await started.start()
    try:
        yield started
    finally:
        await started.stop()


async def lanes_with_two_partitions(kafka_bootstrap: str, department: str) -> Settings:
    settings = Settings(kafka_bootstrap_servers=kafka_bootstrap, kafka_topic_partitions=2)
    await kafka.ensure_topics(settings, priority.lane_topics(department))
    return settings


async def write(producer: AIOKafkaProducer, department: str, lane: str,
                partition: int) -> str:
    event = routed_event(department, lane)
    await producer.send_and_wait(lane, envelope.to_value(event), partition=partition,
                                 headers=envelope.to_headers(event))
    assert event.ticket_id is not None
    return event.ticket_id


async def read(settings: Settings, department: str
               ) -> tuple[list[str], list[queue.Unreadable]]:
    skipped: list[queue.Unreadable] = []
    taken = [ticket.ticket_id async for ticket in queue.read_queue(
        settings, department, max_tickets=10, wait_seconds=3, on_unreadable=skipped.append)]
    return taken, skipped


class TestARecordTheKafkaClientCannotRead:
    async def test_is_reported_and_read_past_and_the_tickets_around_it_are_taken(
            self, kafka_bootstrap: str, producer: AIOKafkaProducer) -> None:
        """A record whose header name is not UTF-8 (written with kcat: aiokafka raises
        out of every fetch of its partition, taking down what the fetch took from the
        other partitions) between two tickets of a lane's partition, with tickets on
        another partition and another lane: each ticket is taken once, the record is
        reported at its offset, and committed past (the next read finds nothing)."""
        department = unique("unreadable")
        settings = await lanes_with_two_partitions(kafka_bootstrap, department)
        high, normal, _ = priority.lane_topics(department)
        written = [await write(producer, department, normal, 0)]
        kcat = await asyncio.create_subprocess_exec(
            b"kcat", b"-P", b"-b", kafka_bootstrap.encode(), b"-t", normal.encode(),
            b"-p", b"0", b"-H", b"\xff\xfename=value", stdin=asyncio.subprocess.PIPE)
        await asyncio.wait_for(kcat.communicate(b"not a ticket\n"), 60)
        assert kcat.returncode == 0
        written += [await write(producer, department, lane, partition)
                    for lane, partition in ((normal, 0), (normal, 1), (high, 0), (high, 1))]

        taken, skipped = await read(settings, department)

        assert sorted(taken) == sorted(written)
        [(where, reason)] = [((s.topic, s.partition, s.offset), s.reason) for s in skipped]
        assert where == (normal, 0, 1)
        assert "cannot read this record" in reason and "UnicodeDecodeError" in reason
        assert await read(settings, department) == ([], [])


class TestADepartmentWithoutLanes:
    async def test_its_read_ends_naming_the_lanes(self, kafka_bootstrap: str) -> None:
        """None of its lanes exists (a department gone from the table whose lanes were
        deleted; a typo is refused by the router first): the read ends once they have been
        looked for again for a while (`new_topics`), where the Kafka client would ask for
        their metadata over and over, and say so on stderr, before giving up."""
        department = unique("nolanes")
        with pytest.raises(queue.NoQueue) as raised:
            await read(Settings(kafka_bootstrap_servers=kafka_bootstrap), department)
        assert str(raised.value) == (
            f"no lane of {department} exists, or this Kafka user may read none of them"
            f" (dept.{department}.high, dept.{department}, dept.{department}.low): a"
            " department's lanes are made when a routing table naming it is put in force")


class TestLanesMadeAMomentAgo:
    async def test_are_read_not_taken_for_absent(
            self, kafka_bootstrap: str, producer: AIOKafkaProducer,
            monkeypatch: pytest.MonkeyPatch) -> None:
        """The lanes are made, and a ticket written to one, right after the read's first
        look at the topics its user may see (the real look, which lacks them): what a
        look a moment after a routing table put them in force sees on a broker whose
        metadata has not shown them yet, but every time."""
        department = unique("new-lanes")
        settings = Settings(kafka_bootstrap_servers=kafka_bootstrap)
        _, normal, _ = priority.lane_topics(department)
        looks: list[bool] = []
        written: list[str] = []
        look = AIOKafkaConsumer.topics

        async def made_after_the_first_look(consumer: AIOKafkaConsumer) -> set[str]:
            seen: set[str] = await look(consumer)
            looks.append(normal in seen)
            if len(looks) == 1:
                await kafka.ensure_topics(settings, priority.lane_topics(department))
                written.append(await write(producer, department, normal, 0))
            return seen

        monkeypatch.setattr(AIOKafkaConsumer, "topics", made_after_the_first_look)
        taken, skipped = await read(settings, department)
        assert looks[0] is False
        assert (taken, skipped) == (written, [])


class TestTwoAgentsOfADepartment:
    async def test_an_agent_joining_mid_read_takes_over_partitions_and_no_ticket_is_lost(
            self, kafka_bootstrap: str, producer: AIOKafkaProducer) -> None:
        """Agent A has been given one ticket (its read suspended at the yield, before
        the commit that follows it) with the rest of both partitions fetched, when agent
        B joins the group: the rebalance gives B one partition. A commits the ticket it
        gave out as the partitions are taken away, then takes only its own partition's
        tickets (what it held of B's is B's now: taking it would commit a partition it
        does not hold) and never one twice; B takes its partition's. Every ticket is
        taken, by one agent. Which partition B is given is the group's choice (by its
        members' random ids): when it is the held ticket's, the commit as it is taken
        away is what keeps B from taking that ticket again, about every other run."""
        department = unique("shared")
        settings = await lanes_with_two_partitions(kafka_bootstrap, department)
        _, normal, _ = priority.lane_topics(department)
        written = [await write(producer, department, normal, partition)
                   for partition in (0, 1, 0, 1, 0, 1)]

        agent_a = queue.read_queue(settings, department, max_tickets=10, wait_seconds=3)
        held = (await anext(agent_a)).ticket_id
        taken_by_b, _ = await asyncio.wait_for(read(settings, department), 120)
        taken_by_a = [held] + [ticket.ticket_id async for ticket in agent_a]

        assert len(set(taken_by_a)) == len(taken_by_a), taken_by_a
        assert len(set(taken_by_b)) == len(taken_by_b), taken_by_b
        assert taken_by_b, "B joined the group and was given a partition"
        assert set(taken_by_a) | set(taken_by_b) == set(written)
        assert set(taken_by_a).isdisjoint(taken_by_b)
        assert await read(settings, department) == ([], [])
