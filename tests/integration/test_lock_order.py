"""Two transactions that share rows, on a real PostgreSQL: the metrics service's
batches of timelines, a batch against the retention purge, two writers of the same
webhook callbacks. Each locks the rows in their keys' order, whatever order its plan
reads them in or its batch lists them in, so one waits for the other rather than both
for each other (a deadlock, which PostgreSQL ends by rolling one back).

Each test lets the first transaction take one shared timeline, has the second wait for
it while it asks for two, then has the first ask for the other. Locked in the order the
rows lie on disk (the database here plans sequential scans, as a plan may read them) or
in the order its batch lists them, the second would hold that other one: a deadlock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import NullPool, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from devtools.postgres import LocalPostgres
from services.core import db, migrate
from services.metrics.store import TimelineStore
from services.metrics.timeline import Timeline
from services.webhooks.endpoint_store import Endpoints
from services.webhooks.models import DEAD, PENDING, WebhookDeliveryRow
from services.webhooks.outbox_store import Deliveries, Outgoing
from tests.databases import (
    QUEUE_WAIT_SECONDS,
    ExternalPostgres,
    fresh_postgres_database,
    until_one_waits_for_a_lock,
)

LONG_AGO = datetime(2020, 1, 1, tzinfo=UTC)

Step = Callable[[AsyncConnection], Awaitable[None]]


@pytest.fixture
async def engine(postgres_server: LocalPostgres | ExternalPostgres) -> AsyncIterator[AsyncEngine]:
    """A migrated database whose sessions read tables by sequential scans: the rows as
    they lie on disk, not by ticket."""
    async with fresh_postgres_database(postgres_server.url) as url:
        await migrate.upgrade(url)
        name = make_url(url).database
        admin = create_async_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
        async with admin.connect() as connection:
            for setting in ("enable_indexscan", "enable_bitmapscan", "enable_indexonlyscan"):
                await connection.execute(text(f'ALTER DATABASE "{name}" SET {setting} = off'))
        await admin.dispose()
        engine = db.engine(url)
        try:
            yield engine
        finally:
            await engine.dispose()


async def first_then_second(engine: AsyncEngine, first_takes: Step,
                            second: Callable[[], Awaitable[object]],
                            first_then_takes: Step) -> object:
    """The first transaction takes its first lock; the second asks for its own (and
    waits); the first asks for its second, then commits; then the second ends. What
    the second returned."""
    async with engine.connect() as first:
        await first_takes(first)
        waiting = asyncio.ensure_future(second())
        try:
            await until_one_waits_for_a_lock(engine)
            await first_then_takes(first)
            await first.commit()
            return await asyncio.wait_for(asyncio.shield(waiting), QUEUE_WAIT_SECONDS)
        finally:
            if not waiting.done():
                waiting.cancel()


async def stored(engine: AsyncEngine, store: TimelineStore, *ticket_ids: str) -> None:
    """Timelines routed long ago, one transaction each: on disk in the order given."""
    for ticket_id in ticket_ids:
        async with engine.begin() as connection:
            await store.save_many(connection, [Timeline(ticket_id=ticket_id,
                                                        routed_at=LONG_AGO)])


def insert(delivery_id: str, status: str = PENDING) -> Step:
    """A webhook callback written to the outbox, in the transaction's connection."""
    async def inserting(connection: AsyncConnection) -> None:
        now = datetime.now(UTC)
        await connection.execute(WebhookDeliveryRow.__table__.insert().values(
            delivery_id=delivery_id, platform="helpdesk", event_type="ticket.routed",
            ticket_id="t-1", body="{}", status=status, attempts=0, next_attempt_at=now,
            created_at=now, updated_at=now))
    return inserting


def lock(store: TimelineStore, *ticket_ids: str) -> Step:
    async def locking(connection: AsyncConnection) -> None:
        await store.get_many(connection, set(ticket_ids))
    return locking


async def test_timelines_read_for_update_are_locked_in_the_tickets_order(
        engine: AsyncEngine) -> None:
    store = TimelineStore(db.sessions(engine))
    await stored(engine, store, "t-z", "t-a")

    async def second() -> dict[str, Timeline]:
        async with engine.begin() as connection:
            return await store.get_many(connection, {"t-a", "t-z"})

    read = await first_then_second(engine, lock(store, "t-a"), second, lock(store, "t-z"))
    assert isinstance(read, dict) and sorted(read) == ["t-a", "t-z"]


async def test_new_timelines_are_inserted_in_the_tickets_order(engine: AsyncEngine) -> None:
    store = TimelineStore(db.sessions(engine))

    def insert(*ticket_ids: str) -> Step:
        async def inserting(connection: AsyncConnection) -> None:
            await store.save_many(connection, [Timeline(ticket_id=ticket_id,
                                                        department="billing")
                                               for ticket_id in ticket_ids])
        return inserting

    async def second() -> None:
        async with engine.begin() as connection:
            # Its batch lists t-z first; the first holds t-a, new and not committed.
            await insert("t-z", "t-a")(connection)

    await first_then_second(engine, insert("t-a"), second, insert("t-z"))
    async with engine.connect() as connection:
        written = await store.get_many(connection, {"t-a", "t-z"})
    assert {ticket: timeline.department for ticket, timeline in written.items()} == {
        "t-a": "billing", "t-z": "billing"}


async def test_the_retention_purge_locks_its_chunk_in_the_tickets_order(
        engine: AsyncEngine) -> None:
    store = TimelineStore(db.sessions(engine))
    await stored(engine, store, "t-z", "t-a")

    async def purge() -> int:
        return await store.purge(LONG_AGO + timedelta(days=1), chunk=10)

    purged = await first_then_second(engine, lock(store, "t-a"), purge, lock(store, "t-z"))
    assert purged == 2


async def test_callbacks_are_written_to_the_outbox_in_their_ids_order(
        engine: AsyncEngine) -> None:
    """Two writers of the same callbacks (two instances' batches during a hand-over of
    partitions): an insert waits for the other's uncommitted one of the same id."""
    deliveries = Deliveries(db.sessions(engine))

    def callback(delivery_id: str) -> Outgoing:
        return Outgoing(delivery_id=delivery_id, platform="helpdesk",
                        event_type="ticket.routed", ticket_id="t-1", body="{}")

    async def second() -> None:
        # Its batch lists d-z first; the first holds d-a, new and not committed.
        await deliveries.enqueue([callback("d-z"), callback("d-a")])

    await first_then_second(engine, insert("d-a"), second, insert("d-z"))


async def test_dead_callbacks_replayed_are_locked_in_their_ids_order(
        engine: AsyncEngine) -> None:
    """A replay of a platform's dead callbacks, beside a purge chunk holding some."""
    # Replayed for a platform with an endpoint only.
    endpoints = Endpoints(db.sessions(engine), secret_overlap=timedelta(hours=1))
    assert await endpoints.register("helpdesk", "https://desk.example.com/hooks")
    for delivery_id in ("d-z", "d-a"):  # on disk: d-z first
        async with engine.begin() as connection:
            await insert(delivery_id, DEAD)(connection)

    def hold(delivery_id: str) -> Step:
        async def holding(connection: AsyncConnection) -> None:
            await connection.execute(text(
                "SELECT 1 FROM webhook_deliveries WHERE delivery_id = :id FOR UPDATE"),
                {"id": delivery_id})
        return holding

    async def replay() -> int:
        return await Deliveries(db.sessions(engine)).replay(platform="helpdesk")

    assert await first_then_second(engine, hold("d-a"), replay, hold("d-z")) == 2
