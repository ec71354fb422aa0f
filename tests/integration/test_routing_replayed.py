"""A ticket's routing replayed after its state was written (exactly once: the batch's
Kafka transaction aborted, so its records were never read), on the real SQL store
(SQLite and PostgreSQL): the ticket is routed again and keeps what its trace gained in
between, so a report followed then is not followed twice; once a transfer put it in
another queue in between, the replay routes it nowhere."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.core import envelope, events, kafka
from services.core.events import TicketEvent, TicketEventType
from services.router import priority, worker
from services.router.event_follower import FollowTicketEvent
from services.router.store import RoutedTickets
from tests.integration.stages.stage_records import TABLE, segmented_event


@pytest.fixture
def routed(sessions: async_sessionmaker[AsyncSession]) -> RoutedTickets:
    return RoutedTickets(sessions)


async def route_batch(stage: worker.RouteTicket, event: envelope.Event) -> list[kafka.Output]:
    """One batch of the router stage, as its pipeline runs it, up to the store's write."""
    await stage.prefetch([event])
    outputs = await stage(event)
    await stage.finish_batch()
    return outputs


def in_lanes(outputs: list[kafka.Output]) -> list[str]:
    lanes = set(priority.lane_topics("public_sector"))
    return [output.topic for output in outputs if output.topic in lanes]


def customer_reply(ticket_id: str) -> envelope.Event:
    return events.as_envelope(TicketEvent(
        ticket_id=ticket_id, type=TicketEventType.CUSTOMER_REPLIED,
        occurred_at=datetime.now(UTC)), "corr-1", events.INTAKE_SOURCE)


class TestARoutingReplayed:
    async def test_with_nothing_in_between_it_routes_the_ticket_again(
            self, routed: RoutedTickets) -> None:
        stage = worker.RouteTicket(lambda: TABLE, routed=routed)
        event = segmented_event("government", "t-1")
        await route_batch(stage, event)
        again = await route_batch(stage, event)
        assert len(in_lanes(again)) == 1
        row = await routed.get("t-1")
        assert row is not None
        assert [step["step"] for step in row.trace] == ["received", "segmented", "routed"]

    async def test_it_keeps_a_report_followed_in_between_which_is_not_followed_twice(
            self, routed: RoutedTickets) -> None:
        stage = worker.RouteTicket(lambda: TABLE, routed=routed)
        event = segmented_event("government", "t-1")
        await route_batch(stage, event)
        reply = customer_reply("t-1")
        follow = FollowTicketEvent(routed)
        first = await follow(reply)

        again = await route_batch(stage, event)
        assert len(in_lanes(again)) == 1  # it was in no queue: now it is
        row = await routed.get("t-1")
        assert row is not None
        kept = list(row.trace)
        assert [step["step"] for step in kept] == [
            "received", "segmented", "routed", "customer_replied"]
        assert kept[-1]["event"] == reply.id

        # The reply's batch followed again: it has it, and moves nothing.
        assert [o.event.id for o in await follow(reply)] == [o.event.id for o in first]
        row = await routed.get("t-1")
        assert row is not None and row.trace == kept

    async def test_after_a_transfer_in_between_it_routes_the_ticket_nowhere(
            self, routed: RoutedTickets) -> None:
        stage = worker.RouteTicket(lambda: TABLE, routed=routed)
        event = segmented_event("government", "t-1")
        await route_batch(stage, event)
        moved_at = datetime.now(UTC) + timedelta(seconds=1)
        await routed.record_handover("t-1", department="business_desk", ticket=None,
                                     now=moved_at, steps=[{
                                         "at": moved_at.isoformat(), "step": "transferred",
                                         "from": "public_sector", "to": "business_desk",
                                         "reason": "billing question"}])
        before = await routed.get("t-1")

        assert await route_batch(stage, event) == []
        after = await routed.get("t-1")
        assert before is not None and after is not None
        assert (after.department, after.trace, after.payload) == (
            "business_desk", before.trace, before.payload)
        assert [step["step"] for step in after.trace][-1] == "transferred"

    async def test_a_second_copy_is_still_routed_nowhere(self, routed: RoutedTickets) -> None:
        stage = worker.RouteTicket(lambda: TABLE, routed=routed)
        await route_batch(stage, segmented_event("government", "t-1"))
        copy = segmented_event("government", "t-1")  # another event id
        assert await route_batch(stage, copy) == []
