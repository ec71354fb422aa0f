"""The query plan of each statement a store's call runs, on SQLite or PostgreSQL: for the
tests that check a periodic statement searches an index leading to the rows it is about,
rather than reading every row the store keeps.

PostgreSQL plans an empty table by cost, and a sequential scan of nothing costs least:
its plans are taken with sequential scans disabled, which shows whether an index can
serve the statement (a partial index only if the statement's text implies its WHERE)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.core import db


async def plans(database_url: str,
                call: Callable[[async_sessionmaker[AsyncSession]], Awaitable[object]],
                ) -> list[str]:
    """Run `call` with sessions on the database, then explain each statement it ran,
    with its parameters."""
    engine = db.engine(database_url)
    statements: list[tuple[str, Any]] = []

    def seen(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        statements.append((statement, parameters))

    event.listen(engine.sync_engine, "before_cursor_execute", seen)
    try:
        await call(db.sessions(engine))
        event.remove(engine.sync_engine, "before_cursor_execute", seen)
        found = []
        sqlite = engine.dialect.name == "sqlite"
        async with engine.connect() as connection:
            if not sqlite:
                await connection.exec_driver_sql("SET enable_seqscan = off")
            for statement, parameters in statements:
                rows = await connection.exec_driver_sql(
                    f"EXPLAIN {'QUERY PLAN ' if sqlite else ''}{statement}", parameters)
                found.append(" ".join(str(row[-1]) for row in rows))
        return found
    finally:
        await engine.dispose()
