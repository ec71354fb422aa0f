"""Rows written by an older schema, then migrated: for the tests of what a revision does
to the rows it finds (and gives back on its downgrade)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from alembic import command
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.core import db, migrate


@asynccontextmanager
async def written_at(database_url: str, revision: str, statement: str,
                     *params: Mapping[str, Any]) -> AsyncIterator[AsyncEngine]:
    """The database migrated to `revision`, `statement` run there (once for each of
    `params`, else once), then migrated to the newest revision: an engine on it."""
    await migrate.upgrade(database_url, revision)
    engine = db.engine(database_url)
    try:
        async with engine.begin() as connection:
            for each in params or ({},):
                await connection.execute(text(statement), each)
        await migrate.upgrade(database_url)
        yield engine
    finally:
        await engine.dispose()


async def downgrade(database_url: str, revision: str) -> None:
    """Alembic's downgrade of the database to `revision` (off the event loop)."""
    await asyncio.to_thread(command.downgrade, migrate.config(database_url), revision)
