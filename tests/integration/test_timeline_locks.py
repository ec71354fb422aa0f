"""Two transactions of the metrics service that share timelines, on a real PostgreSQL:
each locks them in the tickets' order, whatever order its plan reads them in or its
batch lists them in, so one waits for the other rather than both for each other (a
deadlock, which PostgreSQL ends by rolling one back).

Each test lets the first transaction take one shared timeline, has the second wait for
it while it asks for two, then has the first ask for the other. Locked in the order the
rows lie on disk (the second reads them with a sequential scan here, as a plan may) or
in the order its batch lists them, the second would hold that other one: a deadlock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from devtools.postgres import LocalPostgres
from services.core import db, migrate
from services.metrics.store import TimelineStore
from services.metrics.timeline import Timeline
from tests.databases import ExternalPostgres, fresh_postgres_database

# The longest the tests wait for the second transaction to queue for a lock (it asks
# at once; this only bounds a test that would otherwise hang).
QUEUE_WAIT_SECONDS = 30.0


@pytest.fixture
async def engine(postgres_server: LocalPostgres | ExternalPostgres) -> AsyncIterator[AsyncEngine]:
    async with fresh_postgres_database(postgres_server.url) as url:
        await migrate.upgrade(url)
        engine = db.engine(url)
        try:
            yield engine
        finally:
            await engine.dispose()


async def until_one_waits_for_a_lock(engine: AsyncEngine) -> None:
    """Return once a transaction of this database waits for a row lock."""
    async with engine.connect() as watcher:
        for _ in range(int(QUEUE_WAIT_SECONDS / 0.05)):
            waiting = (await watcher.execute(text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND wait_event_type = 'Lock'"))).scalar_one()
            await watcher.rollback()  # a fresh snapshot of the activity each time
            if waiting:
                return
            await asyncio.sleep(0.05)
    raise AssertionError("the second transaction never waited for the first's lock")


async def first_then_second(engine: AsyncEngine,
                            first_takes: Callable[[AsyncConnection], Awaitable[None]],
                            second_takes: Callable[[AsyncConnection], Awaitable[None]],
                            first_then_takes: Callable[[AsyncConnection], Awaitable[None]],
                            ) -> None:
    """The first transaction takes its first lock; the second asks for its own (and
    waits); the first asks for its second, then commits; then the second commits."""
    async with engine.connect() as first:
        await first_takes(first)

        async def second() -> None:
            async with engine.begin() as connection:
                # A sequential scan: the rows as they lie on disk, not by ticket.
                await connection.execute(text("SET LOCAL enable_indexscan = off"))
                await connection.execute(text("SET LOCAL enable_bitmapscan = off"))
                await second_takes(connection)

        waiting = asyncio.create_task(second())
        try:
            await until_one_waits_for_a_lock(engine)
            await first_then_takes(first)
            await first.commit()
            await asyncio.wait_for(asyncio.shield(waiting), QUEUE_WAIT_SECONDS)
        finally:
            if not waiting.done():
                waiting.cancel()


async def test_timelines_read_for_update_are_locked_in_the_tickets_order(
        engine: AsyncEngine) -> None:
    store = TimelineStore(db.sessions(engine))
    for ticket_id in ("t-z", "t-a"):  # on disk: t-z first
        async with engine.begin() as connection:
            await store.save_many(connection, [Timeline(ticket_id=ticket_id)])
    read: dict[str, Timeline] = {}

    async def second_takes(connection: AsyncConnection) -> None:
        read.update(await store.get_many(connection, {"t-a", "t-z"}))

    def lock(ticket_id: str) -> Callable[[AsyncConnection], Awaitable[None]]:
        async def locking(connection: AsyncConnection) -> None:
            await store.get_many(connection, {ticket_id})
        return locking

    await first_then_second(engine, lock("t-a"), second_takes, lock("t-z"))
    assert sorted(read) == ["t-a", "t-z"]


async def test_new_timelines_are_inserted_in_the_tickets_order(engine: AsyncEngine) -> None:
    store = TimelineStore(db.sessions(engine))

    def insert(*ticket_ids: str) -> Callable[[AsyncConnection], Awaitable[None]]:
        async def inserting(connection: AsyncConnection) -> None:
            await store.save_many(connection, [Timeline(ticket_id=ticket_id,
                                                        department="billing")
                                               for ticket_id in ticket_ids])
        return inserting

    # The second's batch lists t-z first; the first holds t-a, new and not committed.
    await first_then_second(engine, insert("t-a"), insert("t-z", "t-a"), insert("t-z"))
    async with engine.connect() as connection:
        stored = (await store.get_many(connection, {"t-a", "t-z"}))
    assert {ticket: timeline.department for ticket, timeline in stored.items()} == {
        "t-a": "billing", "t-z": "billing"}
