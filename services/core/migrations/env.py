"""Alembic's environment: migrations run online through the project's async engine, one
migrator at a time per database.

Reading the current revision and migrating happen in one transaction that first takes a
lock, so when several services migrate the same database at once, one migrates and the
others then find the schema at head:
- PostgreSQL: `pg_advisory_xact_lock`, released at commit (DDL is transactional there);
- SQLite: `BEGIN IMMEDIATE`, SQLite's write lock, waited for up to the busy timeout set by
  `db.engine`. The driver's own transaction handling is turned off for this engine, else
  it would leave DDL outside any transaction.
"""

from __future__ import annotations

import asyncio
from typing import Any

from alembic import context
from sqlalchemy import event, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from services.core import db, migrate

target_metadata = migrate.metadata()


def _take_turns_on_sqlite(engine: AsyncEngine) -> None:
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # SQLAlchemy emits BEGIN itself (below); foreign keys stay off while migrating, as
        # SQLite's table rebuilds (batch mode) would otherwise cascade deletes.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=OFF")
        cursor.close()

    def on_begin(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    event.listen(engine.sync_engine, "connect", on_connect)
    event.listen(engine.sync_engine, "begin", on_begin)


def _migrate(connection: Connection) -> None:
    sqlite = connection.dialect.name == "sqlite"
    with connection.begin():
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                               {"key": migrate.ADVISORY_LOCK_KEY})
        # Inside our transaction, Alembic neither begins nor commits one of its own.
        context.configure(connection=connection, target_metadata=target_metadata,
                          render_as_batch=sqlite, transactional_ddl=True, compare_type=True)
        with context.begin_transaction():
            context.run_migrations()


async def _run(database_url: str) -> None:
    engine = db.engine(database_url)
    if engine.dialect.name == "sqlite":
        _take_turns_on_sqlite(engine)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_migrate)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    raise RuntimeError("offline (--sql) migrations are not supported; run them online")
asyncio.run(_run(context.config.attributes.get("database_url")
                 or context.config.get_main_option("sqlalchemy.url") or ""))
