"""The router's periodic polls of its store (the load sample every few seconds in each
router process, the escalation check, the clock watch) read through an index that leads
to the tickets they are about (open, recently answered or due), not through every routed
ticket kept: SQLite's and PostgreSQL's plans for the statements the store runs. A plan
that scans the table costs in proportion to the history the store keeps
(`bench.router_polls`)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta

import pytest

from services.core import db, migrate
from services.router import service_clocks
from services.router.store import Dispatch, RoutedTickets
from tests.query_plans import plans

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
Poll = Callable[[RoutedTickets], Awaitable[object]]
# Each poll, and the index it searches: by first response (the unanswered tickets, and
# those answered lately), the tickets the escalation check may escalate (unanswered, without
# clocks and not escalated yet, by deadline) or by the clocks' next check.
POLLS: dict[str, tuple[Poll, str]] = {
    "backlog": (lambda store: store.backlog(), "ix_routed_tickets_first_response"),
    "oldest_open": (lambda store: store.oldest_open(), "ix_routed_tickets_first_response"),
    "first_responses_since": (lambda store: store.first_responses_since(
        NOW - timedelta(hours=1)), "ix_routed_tickets_first_response"),
    "due_for_escalation": (lambda store: store.due_for_escalation(NOW),
                           "ix_routed_tickets_escalation_due"),
    "due_clocks": (lambda store: store.due_clocks(NOW), "ix_routed_tickets_next_clock_check"),
}


@pytest.mark.parametrize("poll", sorted(POLLS))
async def test_a_poll_searches_an_index_rather_than_scanning_the_history(
        empty_database_url: str, poll: str) -> None:
    await migrate.upgrade(empty_database_url)
    [plan] = await plans(empty_database_url,
                         lambda sessions: POLLS[poll][0](RoutedTickets(sessions)))
    index = POLLS[poll][1]
    if empty_database_url.startswith("sqlite"):
        assert f"SEARCH routed_tickets USING COVERING INDEX {index} " in plan \
            or f"SEARCH routed_tickets USING INDEX {index} " in plan, plan
        assert "SCAN" not in plan, plan
    else:
        assert f" {index} " in plan, plan
        assert "Seq Scan" not in plan, plan


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[RoutedTickets]:
    """The router's store, on a migrated database."""
    engine = db.engine(database_url)
    try:
        yield RoutedTickets(db.sessions(engine))
    finally:
        await engine.dispose()


def routed_two_hours_ago(*, deadline: datetime, clocks: bool) -> Dispatch:
    """t-1, routed to customer_care two hours before NOW and due at `deadline`: with
    clocks (a first response within an hour) or, as routed before migration 0010,
    without."""
    at = NOW - timedelta(hours=2)
    return Dispatch(
        ticket_id="t-1", department="customer_care", segment="standard", priority=3,
        deadline=deadline, steps=[], payload={}, at=at,
        clocks=service_clocks.routed(service_clocks.Targets(timedelta(hours=1)), at, None)
        if clocks else None)


async def test_a_ticket_whose_check_is_postponed_is_not_due_before_then(
        store: RoutedTickets) -> None:
    """The clock watch postpones a ticket whose notice failed (clock_watch.watch_clocks):
    the poll passes it over until then, and finds it again after."""
    await store.record_first_dispatches([routed_two_hours_ago(deadline=NOW, clocks=True)])
    [due] = await store.due_clocks(NOW)
    assert due.ticket_id == "t-1" and due.next_clock_check is not None
    # Read before a report moved the clocks: the check it set stands.
    await store.postpone_clock_check("t-1", NOW + timedelta(minutes=15),
                                     read=due.next_clock_check - timedelta(seconds=1))
    assert [row.ticket_id for row in await store.due_clocks(NOW)] == ["t-1"]
    await store.postpone_clock_check("t-1", NOW + timedelta(minutes=15),
                                     read=due.next_clock_check)
    assert await store.due_clocks(NOW + timedelta(minutes=14)) == []
    assert [row.ticket_id for row in await store.due_clocks(
        NOW + timedelta(minutes=15))] == ["t-1"]


async def test_a_ticket_without_clocks_whose_escalation_failed_waits_as_well(
        store: RoutedTickets) -> None:
    """A ticket routed before migration 0010 (no clocks, no check of its own) whose
    escalation failed for its own reason is postponed alike (clock_watch.checked_again_later
    gives it a next check): the escalation check passes it over until then, and the clock
    watch's poll, which is for tickets with clocks, never reads it."""
    await store.record_first_dispatches([routed_two_hours_ago(
        deadline=NOW - timedelta(minutes=1), clocks=False)])
    [due] = await store.due_for_escalation(NOW)
    assert due.next_clock_check is None
    await store.postpone_clock_check("t-1", NOW + timedelta(minutes=15), read=None)
    assert await store.due_for_escalation(NOW + timedelta(minutes=14)) == []
    assert await store.due_clocks(NOW + timedelta(minutes=15)) == []
    assert [row.ticket_id for row in await store.due_for_escalation(
        NOW + timedelta(minutes=15))] == ["t-1"]
    # Postponed again only as read: a second failure, not one read before the first.
    await store.postpone_clock_check("t-1", NOW + timedelta(minutes=45), read=None)
    assert [row.ticket_id for row in await store.due_for_escalation(
        NOW + timedelta(minutes=15))] == ["t-1"]
