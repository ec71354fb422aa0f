"""A hand-over's claim on a routed ticket in a real SQL store (SQLite and PostgreSQL):
one claim at a time, only on the ticket as the claimant read it (department, last
change) and open; it expires, is released by its holder only, and the hand-over's
record ends it, keeping a priority changed since the claimant read the ticket."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.core import tickets
from services.core.events import TicketEventType
from services.router.models import RoutedTicketRow
from services.router.store import Dispatch, RoutedTickets

NOW = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
HOLD = timedelta(minutes=5)


@pytest.fixture
async def routed(sessions: async_sessionmaker[AsyncSession]) -> RoutedTickets:
    store = RoutedTickets(sessions)
    await store.record_first_dispatches([Dispatch(
        ticket_id="t-1", department="care", segment="standard", priority=3,
        deadline=NOW + timedelta(hours=1), steps=[], payload={}, at=NOW)])
    return store


def copy_at(priority: int) -> tickets.RoutedTicket:
    """The routed ticket's copy, as a hand-over builds it from the ticket it read."""
    ticket = tickets.Ticket(ticket_id="t-1", customer_id="c-1", subject="s", body="b",
                            channel="web", received_at=NOW, platform="helpdesk")
    return ticket.with_segmentation(tickets.Segmentation(
        segment="standard", rule="r", rules_version="r1", customer_known=True,
        tier="existing")).with_routing(tickets.Routing(
            department="billing", reason="transfer", table_version="v1", routed_at=NOW,
            priority=priority))


async def read(routed: RoutedTickets) -> RoutedTicketRow:
    row = await routed.get("t-1")
    assert row is not None
    return row


async def test_of_hand_overs_racing_exactly_one_claims_the_ticket(
        routed: RoutedTickets) -> None:
    row = await read(routed)
    won = await asyncio.gather(*(routed.claim_handover(row, hold=HOLD) for _ in range(6)))
    assert sum(claim is not None for claim in won) == 1


async def test_a_claim_needs_the_ticket_as_read_and_open(routed: RoutedTickets) -> None:
    before = await read(routed)
    assert await routed.record_report("t-1", TicketEventType.PICKED_UP, NOW)
    assert await routed.claim_handover(before, hold=HOLD) is None  # a report since
    claim = await routed.claim_handover(await read(routed), hold=HOLD)
    assert claim is not None
    # Its record ends the claim: only the resolution refuses the claims below.
    await routed.record_handover("t-1", department="billing", steps=[], ticket=None,
                                 now=NOW + timedelta(minutes=1), claim=claim)
    moved = await read(routed)
    assert await routed.record_report("t-1", TicketEventType.RESOLVED, NOW)
    assert await routed.claim_handover(moved, hold=HOLD) is None  # closed (and changed)
    assert await routed.claim_handover(await read(routed), hold=HOLD) is None  # closed


async def test_a_claim_expires_is_released_by_its_holder_and_ends_with_its_record(
        routed: RoutedTickets) -> None:
    row = await read(routed)
    expired = await routed.claim_handover(row, hold=timedelta(0))  # its holder died
    assert expired is not None
    taken = await routed.claim_handover(row, hold=HOLD)  # taken over
    assert taken is not None and taken != expired
    await routed.release_handover("t-1", expired)  # the late holder's: no effect
    assert await routed.claim_handover(row, hold=HOLD) is None
    await routed.record_handover("t-1", department="billing", steps=[], ticket=None,
                                 now=NOW + timedelta(minutes=1), claim=taken)
    after = await read(routed)
    assert (after.department, after.handover_until) == ("billing", None)
    assert await routed.claim_handover(after, hold=HOLD) is not None


async def test_a_hand_over_recorded_after_a_priority_change_keeps_the_new_priority(
        routed: RoutedTickets) -> None:
    """A priority change that read the ticket before a transfer claimed it is recorded
    during the transfer's publish: the transfer's record, built from the ticket at
    priority 3, keeps priority 1 on the copy a later hand-over joins the lane of."""
    claim = await routed.claim_handover(await read(routed), hold=HOLD)
    assert claim is not None
    await routed.record_priority_change("t-1", priority=1, step={"step": "priority_changed"},
                                        move_clocks=lambda clocks, _department: clocks)
    await routed.record_handover("t-1", department="billing", steps=[], ticket=copy_at(3),
                                 now=NOW + timedelta(minutes=1), claim=claim)
    after = await read(routed)
    assert (after.department, after.priority) == ("billing", 1)
    assert after.payload["routing"]["priority"] == 1
    assert tickets.RoutedTicket.model_validate(after.payload).routing.department == "billing"
