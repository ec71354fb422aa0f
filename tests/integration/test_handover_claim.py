"""A hand-over's claim on a routed ticket in a real SQL store (SQLite and PostgreSQL):
one claim at a time, only on the department the claimant read and an open ticket; it
expires, is released, and the hand-over's record ends it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from services.core import db
from services.core.events import TicketEventType
from services.router.store import Dispatch, RoutedTickets

NOW = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
HOLD = timedelta(seconds=10)


@pytest.fixture
async def routed(database_url: str) -> AsyncIterator[RoutedTickets]:
    engine = db.engine(database_url)
    try:
        store = RoutedTickets(db.sessions(engine))
        await store.record_first_dispatches([Dispatch(
            ticket_id="t-1", department="care", segment="standard", priority=3,
            deadline=NOW + timedelta(hours=1), steps=[], payload={}, at=NOW)])
        yield store
    finally:
        await engine.dispose()


async def claim(routed: RoutedTickets, *, department: str = "care",
                at: datetime = NOW) -> bool:
    return await routed.claim_handover("t-1", department=department, now=at, until=at + HOLD)


async def test_of_hand_overs_racing_exactly_one_claims_the_ticket(
        routed: RoutedTickets) -> None:
    won = await asyncio.gather(*(claim(routed) for _ in range(6)))
    assert sorted(won) == [False] * 5 + [True]


async def test_a_claim_needs_the_department_read_and_an_open_ticket(
        routed: RoutedTickets) -> None:
    assert not await claim(routed, department="billing")  # moved on since it was read
    assert not await routed.claim_handover("t-unknown", department="care", now=NOW,
                                           until=NOW + HOLD)
    assert await routed.record_report("t-1", TicketEventType.RESOLVED, NOW)
    assert not await claim(routed)


async def test_a_claim_expires_is_released_and_ends_with_its_record(
        routed: RoutedTickets) -> None:
    assert await claim(routed)
    assert not await claim(routed, at=NOW + HOLD - timedelta(seconds=1))
    assert await claim(routed, at=NOW + HOLD)  # its holder died: taken over
    await routed.release_handover("t-1")
    assert await claim(routed, at=NOW + HOLD)
    await routed.record_handover("t-1", department="billing", steps=[], ticket=None,
                                 now=NOW + HOLD)
    row = await routed.get("t-1")
    assert row is not None and (row.department, row.handover_until) == ("billing", None)
    assert await claim(routed, department="billing", at=NOW + HOLD)
