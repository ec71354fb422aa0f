"""Databases for the tests (a pytest plugin: `pytest_plugins = ["tests.databases"]`).

- `postgres_server` (session): a throwaway local PostgreSQL server, or the server of
  `TEST_POSTGRES_URL` (an asyncpg URL whose user may create databases) when that is set;
- `empty_database_url`: a fresh, empty database for one test, once on SQLite and once on
  PostgreSQL (test ids `[sqlite]`, `[postgresql]`); PostgreSQL is only started when needed;
- `database_url`: the same, migrated to head;
- `until_one_waits_for_a_lock` and `paused_before_commit`: for tests that have one
  transaction wait for another's lock.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import NullPool, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    AsyncSessionTransaction,
    async_sessionmaker,
    create_async_engine,
)

from devtools.postgres import LocalPostgres
from services.core import db, migrate
from services.router.store import RoutedTickets
from tests import waits

BACKENDS = ["sqlite", "postgresql"]
# The longest a test waits for a transaction to queue for a lock (it asks at once; this
# only bounds a test that would otherwise hang).
QUEUE_WAIT_SECONDS = 30.0


@dataclass(frozen=True)
class ExternalPostgres:
    """A server we did not start (TEST_POSTGRES_URL): it cannot be stopped or killed."""

    url: str


@pytest.fixture(scope="session")
def postgres_server(
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPostgres | ExternalPostgres]:
    configured = os.environ.get("TEST_POSTGRES_URL")
    if configured:
        yield ExternalPostgres(configured)
        return
    server = LocalPostgres(tmp_path_factory.mktemp("postgres"))
    server.start()
    try:
        yield server
    finally:
        server.remove()


@asynccontextmanager
async def fresh_postgres_database(server_url: str) -> AsyncIterator[str]:
    """A new database on the server of `server_url`, dropped afterwards."""
    name = f"test_{uuid.uuid4().hex[:16]}"
    admin = create_async_engine(server_url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as connection:
            await connection.execute(text(f'CREATE DATABASE "{name}"'))
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
        async with admin.connect() as connection:
            await connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        await admin.dispose()


@pytest.fixture(params=BACKENDS)
async def empty_database_url(request: pytest.FixtureRequest,
                             tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'test-store.db'}"
        return
    server: LocalPostgres | ExternalPostgres = request.getfixturevalue("postgres_server")
    async with fresh_postgres_database(server.url) as url:
        yield url


@pytest.fixture
async def database_url(empty_database_url: str) -> str:
    await migrate.upgrade(empty_database_url)
    return empty_database_url


@pytest.fixture
async def seeded_postgres(
        postgres_server: LocalPostgres | ExternalPostgres) -> AsyncIterator[str]:
    """A fresh PostgreSQL database with the demo customers, dropped afterwards."""
    from devtools import demo

    async with fresh_postgres_database(postgres_server.url) as url:
        await demo.seed_if_empty(url, count=100)
        yield url


@pytest.fixture
async def sessions(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Sessions on the migrated store of `database_url` (SQLite and PostgreSQL)."""
    engine = db.engine(database_url)
    try:
        yield db.sessions(engine)
    finally:
        await engine.dispose()


@pytest.fixture
def routed(sessions: async_sessionmaker[AsyncSession]) -> RoutedTickets:
    """The router's routed tickets on that store."""
    return RoutedTickets(sessions)


async def until_one_waits_for_a_lock(engine: AsyncEngine) -> None:
    """Return once a transaction of this PostgreSQL database waits for a lock."""
    async with engine.connect() as watcher:
        async def one_waits() -> bool:
            waiting = (await watcher.execute(text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND wait_event_type = 'Lock'"))).scalar_one()
            await watcher.rollback()  # a fresh snapshot of the activity each time
            return bool(waiting)

        await waits.until(one_waits, within=QUEUE_WAIT_SECONDS, every=0.05)


def paused_before_commit(engine: AsyncEngine, *, there: asyncio.Event,
                         go: asyncio.Event) -> async_sessionmaker[AsyncSession]:
    """Sessions as `db.sessions` makes them, except that a transaction begun with
    `session.begin()` that ends without an error sets `there`, then waits for `go`
    before it commits: a test holds it open after its last statement, as a worker may
    be held between its statements and its commit (its process descheduled, a slow
    network). Its statements are those of the code under test, unchanged."""

    class Paused(AsyncSessionTransaction):
        async def __aexit__(self, type_: object, value: object, traceback: object) -> None:
            if type_ is None:
                there.set()
                await go.wait()
            await super().__aexit__(type_, value, traceback)

    class PausedSession(AsyncSession):
        def begin(self) -> AsyncSessionTransaction:
            return Paused(self)

    sessions: async_sessionmaker[AsyncSession] = db.sessions(engine)
    sessions.class_ = PausedSession
    return sessions
