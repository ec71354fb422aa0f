"""A ticket's routing replayed after its state was written (exactly once: the batch's
Kafka transaction aborted, so its records were never read), on the real SQL store
(SQLite and PostgreSQL): the ticket as stored is published again, where the store says
it is, and nothing is written, so what was reported or handed over in between stands (a
report followed then is not followed twice; after a transfer only the lifecycle event
goes, the transfer's queue has the ticket)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.core import envelope, events, faults, kafka, topics
from services.core.events import TicketEvent, TicketEventType
from services.router import priority, service_clocks, worker
from services.router.event_follower import FollowTicketEvent
from services.router.models import RoutedTicketRow
from services.router.store import RoutedTickets
from tests.integration.stages.stage_records import TABLE, segmented_event


@pytest.fixture
def routed(sessions: async_sessionmaker[AsyncSession]) -> RoutedTickets:
    return RoutedTickets(sessions)


async def route_batch(stage: worker.RouteTicket,
                      *batch: envelope.Event) -> list[kafka.Output]:
    """One batch of the router stage, as its pipeline runs it, up to the store's write."""
    await stage.prefetch(batch)
    outputs = [output for event in batch for output in await stage(event)]
    await stage.finish_batch()
    return outputs


def lanes(outputs: list[kafka.Output]) -> list[str]:
    return [output.topic for output in outputs if output.topic != topics.EVENTS]


def routed_events(outputs: list[kafka.Output]) -> list[TicketEvent]:
    return [events.read(output.event) for output in outputs if output.topic == topics.EVENTS]


def customer_reply(ticket_id: str) -> envelope.Event:
    return events.as_envelope(TicketEvent(
        ticket_id=ticket_id, type=TicketEventType.CUSTOMER_REPLIED,
        occurred_at=datetime.now(UTC)), "corr-1", events.INTAKE_SOURCE)


async def stored(routed: RoutedTickets) -> RoutedTicketRow:
    row = await routed.get("t-1")
    assert row is not None
    return row


First = tuple[worker.RouteTicket, envelope.Event, list[kafka.Output]]


@pytest.fixture
async def first(routed: RoutedTickets) -> First:
    """t-1 routed to public_sector: the stage, its event, and the outputs of that first
    attempt (never committed)."""
    stage = worker.RouteTicket(lambda: TABLE, routed=routed)
    event = segmented_event("government", "t-1")
    return stage, event, await route_batch(stage, event)


class TestARoutingReplayed:
    async def test_it_publishes_the_ticket_as_first_routed_and_writes_nothing(
            self, routed: RoutedTickets, first: First) -> None:
        stage, event, outputs = first
        before = await stored(routed)
        again = await route_batch(stage, event)
        assert lanes(again) == lanes(outputs) == [priority.queue_for("public_sector", 3)]
        assert [o.event.data for o in again] == [o.event.data for o in outputs]
        [replayed], [original] = routed_events(again), routed_events(outputs)
        assert replayed.occurred_at == original.occurred_at  # as first decided
        after = await stored(routed)
        assert (after.updated_at, after.trace, after.payload) == (
            before.updated_at, before.trace, before.payload)

    async def test_a_report_followed_in_between_stands_and_is_not_followed_twice(
            self, routed: RoutedTickets, first: First) -> None:
        stage, event, _ = first
        reply = customer_reply("t-1")
        follow = FollowTicketEvent(routed)
        followed = await follow(reply)
        kept = (await stored(routed)).trace

        again = await route_batch(stage, event)
        assert lanes(again) == [priority.queue_for("public_sector", 3)]  # in no queue yet
        assert (await stored(routed)).trace == kept
        assert kept[-1]["event"] == reply.id

        # The reply's batch followed again: it has it, and moves nothing.
        assert [o.event.id for o in await follow(reply)] == [o.event.id for o in followed]
        assert (await stored(routed)).trace == kept

    async def test_a_priority_changed_in_between_takes_its_lane(
            self, routed: RoutedTickets, first: First) -> None:
        stage, event, _ = first
        await routed.record_priority_change(
            "t-1", priority=1, step={"at": datetime.now(UTC).isoformat(),
                                     "step": "priority_changed", "priority": 1},
            move_clocks=lambda clocks, _department: clocks)
        again = await route_batch(stage, event)
        assert lanes(again) == [priority.queue_for("public_sector", 1)]
        assert again[0].event.data["routing"]["priority"] == 1
        assert (await stored(routed)).priority == 1

    async def test_after_a_transfer_in_between_only_its_lifecycle_event_goes(
            self, routed: RoutedTickets, first: First) -> None:
        stage, event, outputs = first
        moved_at = datetime.now(UTC) + timedelta(seconds=1)
        await routed.record_handover("t-1", department="business_desk", ticket=None,
                                     now=moved_at, steps=[{
                                         "at": moved_at.isoformat(), "step": "transferred",
                                         "from": "public_sector", "to": "business_desk",
                                         "reason": "billing question"}])
        before = await stored(routed)

        again = await route_batch(stage, event)
        assert lanes(again) == []
        assert [(e.type, e.department, e.occurred_at) for e in routed_events(again)] == [
            (e.type, e.department, e.occurred_at) for e in routed_events(outputs)]
        after = await stored(routed)
        assert (after.department, after.trace, after.payload) == (
            "business_desk", before.trace, before.payload)

    async def test_a_hand_over_being_published_holds_it_back(
            self, routed: RoutedTickets, sessions: async_sessionmaker[AsyncSession],
            first: First) -> None:
        stage, event, _ = first
        async with sessions() as session, session.begin():
            await session.execute(update(RoutedTicketRow).values(
                handover_until=datetime.now(UTC) + timedelta(minutes=1)))
        await stage.prefetch([event])
        with pytest.raises(faults.Transient):
            await stage(event)

    async def test_its_clocks_deadlines_are_those_stored(
            self, routed: RoutedTickets, first: First) -> None:
        stage, event, _ = first
        row = await stored(routed)
        assert row.service_clocks is not None
        [replayed] = routed_events(await route_batch(stage, event))
        assert replayed.deadlines == service_clocks.from_json(
            row.service_clocks).deadlines()


class TestCopies:
    async def test_another_event_of_a_stored_ticket_is_routed_nowhere(
            self, first: First) -> None:
        stage, _, _ = first
        copy = segmented_event("government", "t-1")  # another event id
        assert await route_batch(stage, copy) == []

    async def test_the_same_event_twice_in_one_batch_is_routed_once(
            self, routed: RoutedTickets) -> None:
        stage = worker.RouteTicket(lambda: TABLE, routed=routed)
        event = segmented_event("government", "t-2")
        outputs = await route_batch(stage, event, event)
        assert len(lanes(outputs)) == 1
