"""bench.router_polls measures the polls on the stores it means to: its open tickets are
the backlog the polls find, and its history is answered and resolved, outside it."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from bench import router_polls
from services.core import db, migrate
from services.router.load import RESPONSE_RATE_WINDOW
from services.router.store import RoutedTickets


async def test_the_polls_find_the_open_tickets_and_not_the_history(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'polls.db'}"
    await migrate.upgrade(url)
    now = datetime.now(UTC)
    engine = db.engine(url)
    try:
        await router_polls.fill(engine, 100, 1_000, now)
        store = RoutedTickets(db.sessions(engine))
        backlog = await store.backlog()
        assert sum(backlog.values()) == 100
        assert set(backlog) == set(router_polls.DEPARTMENTS)
        assert set(await store.oldest_open()) == set(router_polls.DEPARTMENTS)
        # Answered days ago: not within the last hour's first responses.
        assert await store.first_responses_since(now - RESPONSE_RATE_WINDOW) == {}
        due = await store.due_for_escalation(now, limit=1_000)
        assert due and all(row.first_response_at is None and row.ticket_id.startswith("t-")
                           and int(row.ticket_id[2:]) < 100 for row in due)
    finally:
        await engine.dispose()
