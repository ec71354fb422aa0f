"""One rule for which ticket without clocks (routed before migration 0010) owes its
escalation: `escalation.owes_escalation`, which a hand-over asks (clock_watch.send_owed),
and the store's `due_for_escalation` query, which the clock watch reads, select the same
tickets, on the real SQL stores (SQLite and PostgreSQL), over a table of cases around each
of the rule's conditions: a change to either side alone fails here."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.core import lifecycle
from services.router import escalation
from services.router.models import RoutedTicketRow
from services.router.store import RoutedTickets

NOW = datetime(2026, 11, 30, 13, 0, tzinfo=UTC)
TICK = timedelta(microseconds=1)
LATE = NOW - timedelta(minutes=5)  # a deadline past by NOW

# Each case: how its ticket differs from one past its deadline, unanswered, never escalated,
# without clocks (the first case); and whether it owes its escalation at NOW.
CASES: dict[str, tuple[dict[str, Any], bool]] = {
    "past its deadline": ({}, True),
    "a microsecond past its deadline": ({"first_response_deadline": NOW - TICK}, True),
    "at its deadline (in time)": ({"first_response_deadline": NOW}, False),
    "before its deadline": ({"first_response_deadline": NOW + TICK}, False),
    "without a deadline": ({"first_response_deadline": None}, False),
    "answered": ({"first_response_at": LATE + timedelta(minutes=1)}, False),
    "escalated already": ({"escalated": True}, False),
    "with clocks (the clock watch's)": ({"service_clocks": {"clocks": []},
                                         "next_clock_check": NOW}, False),
    "with clocks, never checked": ({"service_clocks": {"clocks": []}}, False),
    # Its escalation failed (clock_watch.checked_again_later): due again only then.
    "checked again later": ({"next_clock_check": NOW + TICK}, False),
    "checked again now": ({"next_clock_check": NOW}, True),
    "checked again, since due": ({"next_clock_check": NOW - TICK}, True),
    "resolved (its resolution its first response)": (
        {"status": lifecycle.Status.RESOLVED, "first_response_at": NOW - TICK}, False),
}


def stored(number: int, differs: dict[str, Any]) -> RoutedTicketRow:
    values: dict[str, Any] = {
        "ticket_id": f"t-{number}", "department": "customer_care", "segment": "standard",
        "status": lifecycle.Status.ROUTED, "priority": 3, "first_response_deadline": LATE,
        "first_response_at": None, "escalated": False, "trace": [], "payload": {},
        "updated_at": NOW - timedelta(hours=1), "service_clocks": None,
        "next_clock_check": None, **differs}
    return RoutedTicketRow(**values)


async def test_the_store_selects_the_tickets_the_rule_says_owe_an_escalation(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    names = list(CASES)
    async with sessions() as session, session.begin():
        session.add_all(stored(number, CASES[name][0]) for number, name in enumerate(names))
    store = RoutedTickets(sessions)
    rows = {name: await store.get(f"t-{number}") for number, name in enumerate(names)}

    by_the_rule = {name for name, row in rows.items()
                   if row is not None and escalation.owes_escalation(row, NOW)}
    by_the_store = {names[int(row.ticket_id.removeprefix("t-"))]
                    for row in await store.due_for_escalation(NOW)}

    assert by_the_store == by_the_rule
    # The table says what each case is, so that neither side is read as the other's echo.
    assert by_the_rule == {name for name, (_, owes) in CASES.items() if owes}
