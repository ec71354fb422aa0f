"""The Alembic migrations: on empty SQLite and PostgreSQL databases they build exactly the
models' schema, running them again changes nothing, and services that migrate the same
database at the same moment all succeed (fixtures: tests/databases.py)."""

from __future__ import annotations

import asyncio
import functools
import sqlite3
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import NullPool, text
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import create_async_engine

from services.core import db, migrate
from services.webhooks import models, outbox_store
from tests import waits
from tests.migrated import downgrade, written_at

T = TypeVar("T")
HEAD = ScriptDirectory.from_config(migrate.config("unused")).get_current_head()


def _inspect(connection: Connection) -> tuple[list[Any], list[str]]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    differences = compare_metadata(context, migrate.metadata())
    versions = connection.execute(text("SELECT version_num FROM alembic_version")).scalars()
    return differences, list(versions)


async def on_connection(database_url: str, read: Callable[[Connection], T]) -> T:
    """`read` run on a (sync) connection to the database."""
    engine = db.engine(database_url)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(read)
    finally:
        await engine.dispose()


async def inspect(database_url: str) -> tuple[list[Any], list[str]]:
    """Alembic's differences between the database and the models, and its revisions."""
    return await on_connection(database_url, _inspect)


async def test_upgrade_builds_the_models_schema(empty_database_url: str) -> None:
    await migrate.upgrade(empty_database_url)

    differences, versions = await inspect(empty_database_url)
    assert differences == []
    assert versions == [HEAD]
    # both model modules are in the metadata compared (else their tables would differ)
    assert {"customers", "ticket_timelines"} <= set(migrate.metadata().tables)


async def test_upgrade_again_changes_nothing(database_url: str) -> None:
    engine = db.engine(database_url)
    try:
        async with engine.begin() as connection:
            await connection.execute(text(
                "INSERT INTO customers (customer_id, customer_type, attributes)"
                " VALUES ('c-1', 'person', '{}')"))
        await migrate.upgrade(database_url)
        async with engine.connect() as connection:
            kept = (await connection.execute(text("SELECT customer_id FROM customers"))).all()
    finally:
        await engine.dispose()

    assert kept == [("c-1",)]
    assert await inspect(database_url) == ([], [HEAD])


# The tables whose indexes the revisions since v0014 change (v0015-v0017, v0023).
REINDEXED = ("routed_tickets", "ticket_timelines", "webhook_deliveries")


def _indexes(connection: Connection) -> set[tuple[str, str, tuple[str, ...]]]:
    inspector = sa_inspect(connection)
    return {(table, index["name"] or "", tuple(str(c) for c in index["column_names"]))
            for table in REINDEXED for index in inspector.get_indexes(table)}


async def indexes(database_url: str) -> set[tuple[str, str, tuple[str, ...]]]:
    return await on_connection(database_url, _indexes)


async def test_the_newest_revisions_downgrade_to_the_indexes_before_them(
        empty_database_url: str) -> None:
    await migrate.upgrade(empty_database_url, "0014")
    before = await indexes(empty_database_url)
    await migrate.upgrade(empty_database_url)
    assert await indexes(empty_database_url) != before

    await downgrade(empty_database_url, "0014")
    assert await indexes(empty_database_url) == before
    await migrate.upgrade(empty_database_url)
    assert await inspect(empty_database_url) == ([], [HEAD])


async def test_endpoints_registered_before_holds_are_kept_not_held(
        empty_database_url: str) -> None:
    """v0026 adds when a webhook endpoint is held until (its receiver's 429): one
    registered before it is not held, and is kept through the downgrade."""
    async with written_at(
            empty_database_url, "0025",
            "INSERT INTO webhook_endpoints (platform, url, secret, enabled, created_at,"
            " updated_at) VALUES ('desk', 'https://desk.example.com/hooks', 'whsec_x',"
            " true, '2026-12-06 09:00:00+00:00', '2026-12-06 09:00:00+00:00')") as engine:
        async with engine.connect() as connection:
            held = (await connection.execute(text(
                "SELECT platform, held_until FROM webhook_endpoints"))).all()
        assert held == [("desk", None)]
        await downgrade(empty_database_url, "0025")
        async with engine.connect() as connection:
            kept = (await connection.execute(text("SELECT platform FROM webhook_endpoints"))
                    ).all()
        assert kept == [("desk",)]


async def test_callbacks_dead_lettered_after_v0028_come_after_those_before(
        empty_database_url: str) -> None:
    """v0028 starts the dead-letter clock at the last dead letter's moment: one
    dead-lettered after it, by a worker whose clock is behind, still comes after it in
    the listing."""
    async with written_at(
            empty_database_url, "0027",
            "INSERT INTO webhook_deliveries (delivery_id, platform, event_type,"
            " ticket_id, body, status, attempts, next_attempt_at, created_at,"
            " updated_at) VALUES (:delivery_id, 'desk', 'ticket.routed', 't', '{}',"
            " :status, 3, '2030-01-01 09:00:00+00:00', '2030-01-01 09:00:00+00:00',"
            " '2030-01-01 09:00:00+00:00')",
            {"delivery_id": "msg_old", "status": "dead"},
            {"delivery_id": "msg_new", "status": "pending"}) as engine:
        deliveries = outbox_store.Deliveries(db.sessions(engine))
        await deliveries.record_attempt(
            "msg_new", status=models.DEAD, attempts=3, error="HTTP 500",
            next_attempt_at=datetime(2026, 12, 1, tzinfo=UTC),
            now=datetime(2026, 12, 1, tzinfo=UTC))
        dead = await deliveries.listed(models.DEAD)
        assert [d.delivery_id for d in dead] == ["msg_old", "msg_new"]
        assert dead[1].updated_at == datetime(2030, 1, 1, 9, tzinfo=UTC) + timedelta(
            microseconds=1)


async def test_credentials_issued_before_v0029_keep_the_default_byte_budget(
        empty_database_url: str) -> None:
    """v0029 adds a credential's own budget of body bytes: one issued before it has none
    (the service's INTAKE_BYTE_RATE_LIMIT), and is kept through the downgrade, its index
    by subject with it."""

    def subject_indexes(connection: Connection) -> list[str]:
        return [index["name"] or "" for index in sa_inspect(connection).get_indexes(
            "credentials")]

    async with written_at(
            empty_database_url, "0028",
            "INSERT INTO credentials (credential_id, role, subject, label, secret_hash,"
            " rate_limit, created_at) VALUES ('0123456789ab', 'platform', 'desk', '',"
            " 'hash', '200/second', '2026-12-06 09:00:00+00:00')") as engine:
        async with engine.connect() as connection:
            kept = (await connection.execute(text(
                "SELECT credential_id, rate_limit, byte_rate_limit FROM credentials"))).all()
        assert kept == [("0123456789ab", "200/second", None)]
        await downgrade(empty_database_url, "0028")
        async with engine.connect() as connection:
            kept = (await connection.execute(text(
                "SELECT credential_id, rate_limit FROM credentials"))).all()
            indexes = await connection.run_sync(subject_indexes)
        assert kept == [("0123456789ab", "200/second")]
        assert indexes == ["ix_credentials_subject"]


async def test_concurrent_upgrades_in_one_process(empty_database_url: str) -> None:
    await asyncio.gather(*(migrate.upgrade(empty_database_url) for _ in range(3)))

    assert await inspect(empty_database_url) == ([], [HEAD])


async def test_services_starting_together_all_migrate(empty_database_url: str) -> None:
    """Three processes wait on the migration lock we hold, then race for it."""
    async with holding_the_migration_lock(empty_database_url) as waiting:
        migrators = [
            await asyncio.create_subprocess_exec(
                sys.executable, "-m", "services.core.migrate", "upgrade", empty_database_url,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
            for _ in range(3)]
        await waiting([process.pid for process in migrators])
        finished = asyncio.gather(*(process.communicate() for process in migrators))
    outputs = await asyncio.wait_for(finished, 60)  # the lock is released: they race
    for process, (output, _) in zip(migrators, outputs, strict=True):
        assert process.returncode == 0, output.decode(errors="replace")
    assert await inspect(empty_database_url) == ([], [HEAD])


Waiting = Callable[[list[int]], Awaitable[None]]


@asynccontextmanager
async def holding_the_migration_lock(database_url: str) -> AsyncIterator[Waiting]:
    """Hold the lock env.py takes; yields `waiting(pids)`, which returns once those
    processes are blocked on it. The lock is released when the `with` block is left."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        database = Path(url.database or "")
        writer = sqlite3.connect(database, isolation_level=None)
        writer.execute("PRAGMA journal_mode=WAL")
        writer.execute("BEGIN IMMEDIATE")

        async def waiting_on_sqlite(pids: list[int]) -> None:
            # Blocked processes have the database open, waiting out their busy timeout.
            async def all_open() -> bool:
                return all(_has_open(pid, database) for pid in pids)

            await _until(all_open)

        try:
            yield waiting_on_sqlite
        finally:
            writer.execute("COMMIT")
            writer.close()
        return

    engine = create_async_engine(database_url, poolclass=NullPool)
    lock = {"key": migrate.ADVISORY_LOCK_KEY}
    try:
        async with engine.connect() as holder, engine.connect() as observer:
            await holder.execute(text("SELECT pg_advisory_lock(:key)"), lock)
            await holder.commit()

            async def waiting_on_postgres(pids: list[int]) -> None:
                async def all_blocked() -> bool:
                    blocked = (await observer.execute(text(
                        "SELECT count(*) FROM pg_locks"
                        " WHERE locktype = 'advisory' AND NOT granted"))).scalar_one()
                    await observer.rollback()
                    return int(blocked) >= len(pids)

                await _until(all_blocked)

            try:
                yield waiting_on_postgres
            finally:
                await holder.execute(text("SELECT pg_advisory_unlock(:key)"), lock)
                await holder.commit()
    finally:
        await engine.dispose()


def _has_open(pid: int, path: Path) -> bool:
    try:
        return any(fd.resolve() == path for fd in Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return False


_until = functools.partial(waits.until, within=60, every=0.05)
