"""The SQL store's engine and sessions, built from settings (SQLite file or PostgreSQL)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase

# What the store raises when it is down or unreachable (not when a query is wrong).
STORE_ERRORS: tuple[type[Exception], ...] = (
    OperationalError, InterfaceError, DisconnectionError, OSError, TimeoutError)


class Base(DeclarativeBase):
    """Declarative base of every table in the project."""


def engine(database_url: str) -> AsyncEngine:
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite":
        # A store that does not answer fails within seconds, not asyncpg's minute.
        return create_async_engine(url, pool_pre_ping=True, connect_args={"timeout": 5})
    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    sqlite_engine = create_async_engine(url, connect_args={"timeout": 30})
    event.listen(sqlite_engine.sync_engine, "connect", _sqlite_pragmas)
    return sqlite_engine


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    # Several services share the file: WAL lets readers run beside one writer.
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def sessions(db_engine: AsyncEngine) -> async_sessionmaker[Any]:
    return async_sessionmaker(db_engine, expire_on_commit=False)

