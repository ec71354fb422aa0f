"""A department read (`queue.read_queue`) when the consumer group takes a partition away
while the read is suspended at a ticket it gave out (another agent of the department
joined or left): what it commits, and that it never gives a ticket out twice. The
interleavings (the rebalance during the yield; the commit the group refuses; another
agent's commit meanwhile) cannot be timed on a real broker, so a scripted consumer
stands in for aiokafka's here; the read with a real rebalance on a real broker is
tests/integration/test_department_queue.py. Also the copies a read skips because their
ticket left them (the router says so), in the same interleavings."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError

from services.core import envelope, kafka, tickets
from services.core.settings import Settings
from services.departments import queue
from services.router import lane_copies, priority

DEPARTMENT = "care"
NORMAL = priority.lane_topics(DEPARTMENT)[1]
P0 = TopicPartition(NORMAL, 0)


def routed_record(offset: int) -> ConsumerRecord:
    now = datetime.now(UTC)
    ticket = tickets.RoutedTicket(
        ticket_id=f"t-{offset}", customer_id="c-1", subject="s", body="b", channel="email",
        received_at=now,
        segmentation=tickets.Segmentation(segment="government", rule="r", rules_version="v",
                                          customer_known=True, tier="existing"),
        routing=tickets.Routing(department=DEPARTMENT, reason="route", table_version="t1",
                                routed_at=now, queue=NORMAL, priority=3))
    event = envelope.Event(type="ticket.routed", source="/test", ticket_id=ticket.ticket_id,
                           correlation_id=ticket.ticket_id,
                           data=ticket.model_dump(mode="json"))
    value = envelope.to_value(event)
    return ConsumerRecord(NORMAL, 0, offset, timestamp=0, timestamp_type=0, key=None,
                          value=value, checksum=None, serialized_key_size=-1,
                          serialized_value_size=len(value),
                          headers=tuple(envelope.to_headers(event)))


class ScriptedConsumer:
    """One lane partition with three tickets; the group's commit kept as the broker
    would keep it; `refuse_commits` as a group mid-rebalance refuses them."""

    def __init__(self) -> None:
        self.records = [routed_record(offset) for offset in range(3)]
        self.assigned = {P0}
        self.position = 0
        self.committed = 0
        self.refuse_commits = False
        self.listener: Any = None

    def subscribe(self, topics: list[str], *, listener: Any) -> None:
        self.listener = listener

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def topics(self) -> set[str]:
        return {NORMAL}

    def assignment(self) -> set[TopicPartition]:
        return set(self.assigned)

    async def getmany(self, *, timeout_ms: int) -> dict[TopicPartition, list[ConsumerRecord]]:
        if P0 not in self.assigned or self.position >= len(self.records):
            return {}
        fetched = self.records[self.position:]
        self.position = len(self.records)
        return {P0: fetched}

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        if self.refuse_commits:
            raise CommitFailedError("the group has already rebalanced")
        self.committed = offsets[P0]

    async def rebalance(self, *, back: bool, committed_meanwhile: int | None = None) -> None:
        """The group takes the partition away and, if `back`, gives it back to this
        reader, set to read from the group's commit."""
        await self.listener.on_partitions_revoked({P0})
        self.assigned = set()
        if committed_meanwhile is not None:
            self.committed = committed_meanwhile  # another agent read on
        if back:
            self.assigned = {P0}
            self.position = self.committed


@pytest.fixture
def consumer(monkeypatch: pytest.MonkeyPatch) -> ScriptedConsumer:
    scripted = ScriptedConsumer()
    monkeypatch.setattr(kafka, "consumer", lambda *args, **kwargs: scripted)
    return scripted


def read() -> AsyncIterator[tickets.RoutedTicket]:
    return queue.read_queue(Settings(), DEPARTMENT, max_tickets=10, wait_seconds=0.01)


class TestAPartitionTakenAwayWhileATicketIsGivenOut:
    async def test_the_ticket_given_out_is_committed_and_the_rest_left_to_its_new_reader(
            self, consumer: ScriptedConsumer) -> None:
        reading = read()
        given = [(await anext(reading)).ticket_id]

        await consumer.rebalance(back=False)
        given += [ticket.ticket_id async for ticket in reading]

        assert given == ["t-0"]
        assert consumer.committed == 1  # the next reader starts after the given ticket

    async def test_a_commit_the_group_refused_and_the_partition_back_gives_none_twice(
            self, consumer: ScriptedConsumer) -> None:
        reading = read()
        given = [(await anext(reading)).ticket_id]

        consumer.refuse_commits = True
        await consumer.rebalance(back=True)  # back at the commit before t-0
        consumer.refuse_commits = False
        given += [ticket.ticket_id async for ticket in reading]

        assert given == ["t-0", "t-1", "t-2"]
        assert consumer.committed == 3

    async def test_no_commit_after_the_yield_moves_another_agents_commit_back(
            self, consumer: ScriptedConsumer) -> None:
        reading = read()
        given = [(await anext(reading)).ticket_id]

        # Taken away, read on by another agent to its end, then given back.
        await consumer.rebalance(back=True, committed_meanwhile=3)
        given += [ticket.ticket_id async for ticket in reading]

        assert given == ["t-0"]
        assert consumer.committed == 3


class TestCopiesTheTicketLeft:
    """With the router's word on each copy (`state_of`), a copy whose ticket was
    resolved, handed on or queued again since is skipped and committed past."""

    async def test_a_copy_left_behind_is_skipped_reported_and_committed_past(
            self, consumer: ScriptedConsumer) -> None:
        states = {"t-1": lane_copies.CopyState.RESOLVED}

        async def state_of(ticket: tickets.RoutedTicket) -> lane_copies.CopyState:
            return states.get(ticket.ticket_id, lane_copies.CopyState.WAITING)

        left: list[queue.LeftBehind] = []
        given = [ticket.ticket_id async for ticket in queue.read_queue(
            Settings(), DEPARTMENT, max_tickets=10, wait_seconds=0.01, state_of=state_of,
            on_left_behind=left.append)]

        assert given == ["t-0", "t-2"]
        assert left == [queue.LeftBehind(NORMAL, 0, 1, "t-1",
                                         lane_copies.CopyState.RESOLVED)]
        assert consumer.committed == 3

    async def test_a_copy_whose_partition_is_taken_away_while_asked_about_is_not_given(
            self, consumer: ScriptedConsumer) -> None:
        async def state_of(ticket: tickets.RoutedTicket) -> lane_copies.CopyState:
            if ticket.ticket_id == "t-1":
                await consumer.rebalance(back=False)  # another agent joined meanwhile
            return lane_copies.CopyState.WAITING

        given = [ticket.ticket_id async for ticket in queue.read_queue(
            Settings(), DEPARTMENT, max_tickets=10, wait_seconds=0.01, state_of=state_of)]

        assert given == ["t-0"]
        assert consumer.committed == 1  # its new reader starts at t-1

    @pytest.mark.parametrize("state", [lane_copies.CopyState.WAITING,
                                       lane_copies.CopyState.RESOLVED])
    async def test_given_back_after_another_agent_read_on_it_neither_gives_nor_commits(
            self, consumer: ScriptedConsumer, state: lane_copies.CopyState) -> None:
        async def state_of(ticket: tickets.RoutedTicket) -> lane_copies.CopyState:
            if ticket.ticket_id != "t-1":
                return lane_copies.CopyState.WAITING
            # Taken away, read on by another agent to its end, then given back.
            await consumer.rebalance(back=True, committed_meanwhile=3)
            return state

        given = [ticket.ticket_id async for ticket in queue.read_queue(
            Settings(), DEPARTMENT, max_tickets=10, wait_seconds=0.01, state_of=state_of)]

        assert given == ["t-0"]
        assert consumer.committed == 3  # the other agent's commit stands
