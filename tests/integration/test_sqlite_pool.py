"""The SQLite store's pool gives a connection back rolled back only when a transaction is
still open on it (db._sqlite_reset): one round trip to the driver's thread fewer on
every session, and never a transaction left open for the next user of the connection."""

from __future__ import annotations

from pathlib import Path

import aiosqlite
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.core import db


async def count(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        return int((await connection.execute(text("SELECT count(*) FROM notes"))).scalar_one())


async def test_a_connection_given_back_mid_transaction_is_rolled_back(tmp_path: Path) -> None:
    """A write the driver began, neither committed nor rolled back by its user, is undone
    when its connection comes back to the pool: the next user of that connection does
    not find it, nor its write lock."""
    engine = db.engine(f"sqlite+aiosqlite:///{tmp_path / 'store.db'}")
    try:
        async with engine.begin() as connection:
            await connection.execute(text("CREATE TABLE notes (body TEXT)"))
        async with engine.connect() as connection:
            driver = (await connection.get_raw_connection()).driver_connection
            assert isinstance(driver, aiosqlite.Connection)
            await driver.execute("INSERT INTO notes VALUES ('left open')")
            assert driver.in_transaction
        assert await count(engine) == 0
        async with engine.begin() as connection:  # the write lock is free
            await connection.execute(text("INSERT INTO notes VALUES ('committed')"))
        assert await count(engine) == 1
    finally:
        await engine.dispose()


async def test_a_session_that_ended_its_transaction_is_not_rolled_back_again(
        tmp_path: Path) -> None:
    """A session's commit (or its own rollback) ends its transaction: giving the
    connection back calls the driver no more."""
    engine = db.engine(f"sqlite+aiosqlite:///{tmp_path / 'store.db'}")
    try:
        async with engine.begin() as connection:
            await connection.execute(text("CREATE TABLE notes (body TEXT)"))
        rollbacks = 0
        async with engine.connect() as connection:
            driver = (await connection.get_raw_connection()).driver_connection
            assert isinstance(driver, aiosqlite.Connection)
            rollback = driver.rollback

            async def counted() -> None:
                nonlocal rollbacks
                rollbacks += 1
                await rollback()
            driver.rollback = counted  # type: ignore[method-assign]
        sessions = db.sessions(engine)
        async with sessions() as session, session.begin():
            await session.execute(text("INSERT INTO notes VALUES ('committed')"))
        async with sessions() as session:
            await session.execute(text("SELECT count(*) FROM notes"))
        assert rollbacks == 1  # the read-only session's own, not the pool's after it
        driver.rollback = rollback  # type: ignore[method-assign]
    finally:
        await engine.dispose()
