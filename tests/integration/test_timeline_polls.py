"""The metrics service's periodic polls (deadline check, backlog) read only the tickets
they are about, through partial indexes, not every timeline kept: SQLite's plan for the
statements the store runs."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import event

from services.core import db, migrate
from services.metrics.store import TimelineStore


async def plans(database_url: str, poll: str) -> list[str]:
    """SQLite's query plan of each statement that `poll` of the store runs."""
    engine = db.engine(database_url)
    statements: list[tuple[str, Any]] = []

    def seen(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        statements.append((statement, parameters))

    event.listen(engine.sync_engine, "before_cursor_execute", seen)
    try:
        store = TimelineStore(db.sessions(engine))
        if poll == "past_deadline":
            await store.past_deadline(datetime.now(UTC))
        else:
            await store.open_per_department(backlog=poll == "backlog")
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


async def test_the_deadline_check_reads_only_undecided_targets(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'polls.db'}"
    await migrate.upgrade(url)
    [plan] = await plans(url, "past_deadline")
    assert "ix_ticket_timelines_undecided_deadline" in plan


async def test_the_backlog_reads_only_open_tickets(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'polls.db'}"
    await migrate.upgrade(url)
    for poll in ("open", "backlog"):
        [plan] = await plans(url, poll)
        assert "ix_ticket_timelines_open_department" in plan
