"""The router's periodic polls of its store (the load sample every few seconds in each
router process, the escalation check, the clock watch) read through an index that leads
to the tickets they are about (open, recently answered or due), not through every routed
ticket kept: SQLite's plan for the statements the store runs. A plan that scans the
table costs in proportion to the history the store keeps (`bench.router_polls`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from services.core import db, migrate
from services.router.store import RoutedTickets

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
Poll = Callable[[RoutedTickets], Awaitable[object]]
# Each poll, and the index it searches: by status (the open tickets), by first response
# (answered lately), the tickets the escalation check may escalate (unanswered, without
# clocks and not escalated yet, by deadline) or by the clocks' next check.
POLLS: dict[str, tuple[Poll, str]] = {
    "backlog": (lambda store: store.backlog(), "ix_routed_tickets_status_department"),
    "oldest_open": (lambda store: store.oldest_open(), "ix_routed_tickets_status_department"),
    "first_responses_since": (lambda store: store.first_responses_since(
        NOW - timedelta(hours=1)), "ix_routed_tickets_first_response"),
    "due_for_escalation": (lambda store: store.due_for_escalation(NOW),
                           "ix_routed_tickets_escalation_due"),
    "due_clocks": (lambda store: store.due_clocks(NOW), "ix_routed_tickets_next_clock_check"),
}


async def plans(database_url: str, poll: str) -> list[str]:
    """SQLite's query plan of each statement that `poll` of the store runs."""
    engine = db.engine(database_url)
    statements: list[tuple[str, Any]] = []

    def seen(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        statements.append((statement, parameters))

    event.listen(engine.sync_engine, "before_cursor_execute", seen)
    try:
        await POLLS[poll][0](RoutedTickets(db.sessions(engine)))
        event.remove(engine.sync_engine, "before_cursor_execute", seen)
        found = []
        async with engine.connect() as connection:
            for statement, parameters in statements:
                rows = await connection.exec_driver_sql(
                    f"EXPLAIN QUERY PLAN {statement}", parameters)
                found.append(" ".join(str(row[-1]) for row in rows))
        return found
    finally:
        await engine.dispose()


@pytest.mark.parametrize("poll", sorted(POLLS))
async def test_a_poll_searches_an_index_rather_than_scanning_the_history(
        tmp_path: Path, poll: str) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'polls.db'}"
    await migrate.upgrade(url)
    [plan] = await plans(url, poll)
    assert f"SEARCH routed_tickets USING COVERING INDEX {POLLS[poll][1]} " in plan \
        or f"SEARCH routed_tickets USING INDEX {POLLS[poll][1]} " in plan, plan
    assert "SCAN" not in plan, plan
