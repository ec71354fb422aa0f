"""SQLite's moments (services/core/db.py, UtcDateTime): written as UTC text without an
offset, read straight back into aware UTC datetimes; what SQLite itself writes (no
fraction of a second) reads too. tests/integration/test_utc_columns.py holds the same
for rows, aggregates and comparisons on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import Column, MetaData, String, Table, insert, select, text
from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from services.core import db

CET = timezone(timedelta(hours=2))
NINE = datetime(2026, 11, 30, 9, tzinfo=UTC)
NAIVE_NINE = NINE.replace(tzinfo=None)  # taken to be UTC
MOMENTS = Table("moments", MetaData(), Column("id", String, primary_key=True),
                Column("at", db.UtcDateTime()))


@pytest.fixture
async def connection() -> AsyncIterator[AsyncConnection]:
    engine = db.engine("sqlite+aiosqlite:///:memory:")
    try:
        async with engine.begin() as connection:
            await connection.run_sync(MOMENTS.metadata.create_all)
            yield connection
    finally:
        await engine.dispose()


async def stored_and_read(connection: AsyncConnection) -> tuple[dict[str, str | None],
                                                                dict[str, datetime | None]]:
    raw = await connection.execute(text("SELECT id, at FROM moments"))
    read = await connection.execute(select(MOMENTS.c.id, MOMENTS.c.at))
    return ({row.id: row.at for row in raw}, {row.id: row.at for row in read})


async def test_a_moment_is_stored_as_utc_text_and_read_back_aware(
        connection: AsyncConnection) -> None:
    await connection.execute(insert(MOMENTS), [
        {"id": "cet", "at": datetime(2026, 11, 30, 11, 0, 0, 250, tzinfo=CET)},
        {"id": "naive", "at": NAIVE_NINE + timedelta(seconds=1)},
        {"id": "utc", "at": datetime(2026, 11, 30, 9, 0, 2, 999999, tzinfo=UTC)},
        {"id": "none", "at": None}])
    stored, read = await stored_and_read(connection)
    assert stored == {"cet": "2026-11-30 09:00:00.000250", "naive": "2026-11-30 09:00:01.000000",
                      "utc": "2026-11-30 09:00:02.999999", "none": None}
    assert read == {"cet": datetime(2026, 11, 30, 9, 0, 0, 250, tzinfo=UTC),
                    "naive": datetime(2026, 11, 30, 9, 0, 1, tzinfo=UTC),
                    "utc": datetime(2026, 11, 30, 9, 0, 2, 999999, tzinfo=UTC), "none": None}
    assert all(moment is None or moment.tzinfo is UTC for moment in read.values())


async def test_sqlites_own_text_reads_as_utc(connection: AsyncConnection) -> None:
    await connection.execute(text(
        "INSERT INTO moments VALUES ('now', '2026-11-30 09:00:00'), ('minute', '2026-11-30"
        " 09:00')"))
    _stored, read = await stored_and_read(connection)
    assert read == {"now": datetime(2026, 11, 30, 9, tzinfo=UTC),
                    "minute": datetime(2026, 11, 30, 9, tzinfo=UTC)}


async def test_text_with_an_offset_or_a_date_alone_reads_as_utc(
        connection: AsyncConnection) -> None:
    # Not what SQLAlchemy writes: read as it says, made UTC.
    await connection.execute(text(
        "INSERT INTO moments VALUES ('cet', '2026-11-30 11:00:00+02:00'),"
        " ('zulu', '2026-11-30T09:00:00Z'), ('date', '2026-11-30')"))
    _stored, read = await stored_and_read(connection)
    assert read == {"cet": NINE, "zulu": NINE, "date": NINE - timedelta(hours=9)}
    assert all(moment is not None and moment.tzinfo is UTC for moment in read.values())


def test_sqlite_reads_moments_by_its_own_parse() -> None:
    # What makes a report's eleven moments a ticket cheap (bench/report_window.py).
    read_as = db.UtcDateTime().load_dialect_impl(sqlite.dialect())
    assert isinstance(read_as, db._SqliteMoment)
