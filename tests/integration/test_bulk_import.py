"""Bulk import into a real store: good rows kept, bad ones reported by line, upserts,
purchases only for known customers, row-by-row fallback, and bounded memory."""

from __future__ import annotations

import json
import time
import tracemalloc
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.core import db
from services.segmenter import imports
from services.segmenter.models import CustomerRow, PurchaseRow
from services.segmenter.row_streams import read_rows
from services.segmenter.rows import Format, RowError
from tests.conftest import unique

Sessions = async_sessionmaker[AsyncSession]


@pytest.fixture
async def sessions(database_url: str) -> AsyncIterator[Sessions]:
    # database_url (tests/databases.py): a migrated store, on SQLite and on PostgreSQL.
    engine = db.engine(database_url)
    try:
        yield db.sessions(engine)
    finally:
        await engine.dispose()


async def body(data: str, size: int = 7) -> AsyncIterator[bytes]:
    raw = data.encode()
    for start in range(0, len(raw), size):
        yield raw[start:start + size]


async def import_customers(sessions: Sessions, data: str, fmt: Format = "csv",
                           **options: Any) -> imports.ImportReport:
    return await imports.import_customers(
        sessions, read_rows(body(data), fmt, "customers"), **options)


async def customers(sessions: Sessions, prefix: str) -> dict[str, CustomerRow]:
    async with sessions() as session:
        found = await session.scalars(
            select(CustomerRow).where(CustomerRow.customer_id.startswith(prefix)))
        return {row.customer_id: row for row in found}


async def test_good_rows_are_kept_and_bad_ones_reported_by_line(sessions: Sessions) -> None:
    p = unique("c")
    chunks: list[list[str]] = []
    report = await import_customers(sessions, (
        "customer_id,customer_type,name,birth_date,country,attributes\n"
        f"{p}-1,individual,Lotte Jansen,1980-05-17,NL,\n"
        f"{p}-2,robot,Secret Name,1980-05-17,NL,\n"
        f'{p}-3,organisation,"Acme\nBV",,SE,"{{""vip"": true}}"\n'
        f"{p}-4,individual,Secret Future,2999-01-01,NL,\n"
        "\n"
        f"{p}-5,government,Ministry,,nl,\n"
        f"{p}-6,government,Ministry,,NL,\n"), chunk_size=2, on_chunk=chunks.append)
    assert (report.kind, report.rows_read, report.rows_imported, report.error_count) == (
        "customers", 6, 3, 3)
    assert [(error.line, error.reason.split(" (")[0]) for error in report.errors] == [
        (3, "invalid customer_type"), (6, "invalid birth_date"), (8, "invalid country")]
    assert not any("Secret" in error.reason for error in report.errors)
    stored = await customers(sessions, p)
    assert sorted(stored) == [f"{p}-1", f"{p}-3", f"{p}-6"]
    assert stored[f"{p}-3"].name == "Acme\nBV"
    assert stored[f"{p}-3"].attributes == {"vip": True}
    assert stored[f"{p}-1"].birth_date == date(1980, 5, 17)
    assert stored[f"{p}-1"].attributes == {}
    assert chunks == [[f"{p}-1", f"{p}-3"], [f"{p}-6"]]


async def test_reimport_updates_instead_of_duplicating(sessions: Sessions) -> None:
    p = unique("c")
    first = [{"customer_id": f"{p}-{n}", "customer_type": "individual", "name": f"Name {n}",
              "country": "NL", "attributes": {"n": n}} for n in range(3)]
    report = await import_customers(sessions, "".join(map(json.dumps, first)).replace(
        "}{", "}\n{"), "jsonl")
    assert report.rows_imported == 3
    again = [
        {"customer_id": f"{p}-0", "customer_type": "organisation", "name": "Renamed BV"},
        {"customer_id": f"{p}-1", "customer_type": "individual", "country": "SE"},
        {"customer_id": f"{p}-1", "customer_type": "individual", "language": "sv"},
        {"customer_id": f"{p}-3", "customer_type": "government"},
    ]
    report = await import_customers(
        sessions, "\n".join(map(json.dumps, again)), "jsonl", chunk_size=10)
    assert (report.rows_imported, report.error_count) == (4, 0)
    stored = await customers(sessions, p)
    assert sorted(stored) == [f"{p}-{n}" for n in range(4)]
    renamed, moved = stored[f"{p}-0"], stored[f"{p}-1"]
    # Fields a row gives are updated; the others stay as they were.
    assert (renamed.customer_type, renamed.name, renamed.country, renamed.attributes) == (
        "organisation", "Renamed BV", "NL", {"n": 0})
    assert (moved.name, moved.country, moved.language) == ("Name 1", "SE", "sv")
    # In CSV every column is given: an empty cell clears the field.
    await import_customers(sessions, f"customer_id,customer_type,name\n{p}-2,individual,\n")
    assert (await customers(sessions, f"{p}-2"))[f"{p}-2"].name is None


async def test_purchases_for_unknown_customers_are_refused(sessions: Sessions) -> None:
    p = unique("c")
    await import_customers(sessions, f"customer_id,customer_type\n{p}-1,individual\n")
    touched: list[list[str]] = []

    async def refresh(customer_ids: list[str]) -> None:  # as the caller's feature refresh
        touched.append(customer_ids)

    report = await imports.import_purchases(sessions, read_rows(body(
        "customer_id,amount,currency,purchased_at\n"
        f"{p}-1,12.50,EUR,2026-01-31T09:30:00+01:00\n"
        f"{p}-404,99.99,EUR,2026-01-31T09:30:00Z\n"
        f"{p}-1,0.01,SEK,2026-02-01T23:59:59-05:00\n"
        f"{p}-1,-3,SEK,2026-02-01T23:59:59-05:00\n"), "csv", "purchases"), on_chunk=refresh)
    assert (report.rows_read, report.rows_imported, report.error_count) == (4, 2, 2)
    assert [(error.line, error.reason.split(" (")[0]) for error in report.errors] == [
        (3, imports.NO_SUCH_CUSTOMER), (5, "invalid amount")]
    assert touched == [[f"{p}-1"]]
    async with sessions() as session:
        stored = (await session.execute(
            select(PurchaseRow.customer_id, PurchaseRow.amount, PurchaseRow.purchased_at)
            .where(PurchaseRow.customer_id.startswith(p)).order_by(PurchaseRow.amount))).all()
    assert [(customer, amount) for customer, amount, _ in stored] == [
        (f"{p}-1", Decimal("0.01")), (f"{p}-1", Decimal("12.50"))]
    instants = [at if at.tzinfo else at.replace(tzinfo=UTC) for _, _, at in stored]
    assert instants == [datetime(2026, 2, 2, 4, 59, 59, tzinfo=UTC),
                        datetime(2026, 1, 31, 8, 30, tzinfo=UTC)]


async def test_a_refused_chunk_is_written_row_by_row(sessions: Sessions) -> None:
    p = unique("c")
    refused = f"{p}-2"
    async with sessions() as session, session.begin():
        for statement in refusing_trigger(session.get_bind().dialect.name, p, refused):
            await session.execute(text(statement))
    try:
        touched: list[list[str]] = []
        report = await import_customers(sessions, "customer_id,customer_type\n" + "".join(
            f"{p}-{n},individual\n" for n in range(1, 5)), chunk_size=3,
            on_chunk=touched.append)
    finally:
        async with sessions() as session, session.begin():
            for statement in dropping_trigger(session.get_bind().dialect.name, p):
                await session.execute(text(statement))
    assert (report.rows_imported, report.error_count) == (3, 1)
    assert report.errors == (RowError(3, imports.REFUSED[IntegrityError]),)
    assert sorted(await customers(sessions, p)) == [f"{p}-1", f"{p}-3", f"{p}-4"]
    assert touched == [[f"{p}-1", f"{p}-3"], [f"{p}-4"]]


def refusing_trigger(dialect: str, tag: str, customer_id: str) -> list[str]:
    name = "refuse_" + tag.replace("-", "_")
    if dialect == "sqlite":
        return [f"CREATE TRIGGER {name} BEFORE INSERT ON customers "
                f"WHEN NEW.customer_id = '{customer_id}' "
                "BEGIN SELECT RAISE(ABORT, 'trigger-says-no'); END"]
    return [f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            f"IF NEW.customer_id = '{customer_id}' THEN RAISE EXCEPTION 'trigger-says-no' "
            "USING ERRCODE = 'check_violation'; END IF; RETURN NEW; END $$",
            f"CREATE TRIGGER {name} BEFORE INSERT ON customers FOR EACH ROW "
            f"EXECUTE FUNCTION {name}()"]


def dropping_trigger(dialect: str, tag: str) -> list[str]:
    name = "refuse_" + tag.replace("-", "_")
    if dialect == "sqlite":
        return [f"DROP TRIGGER {name}"]
    return [f"DROP TRIGGER {name} ON customers", f"DROP FUNCTION {name}()"]


async def generated_csv(prefix: str, count: int, chunk_bytes: int = 65536
                        ) -> AsyncIterator[bytes]:
    """A customers file made as it is read, in request-sized chunks, never whole."""
    pending = [b"customer_id,customer_type,name,email,birth_date,gender,country,language,"
               b"socio_economic_band,signup_date,attributes\n"]
    size = len(pending[0])
    for n in range(count):
        line = (f"{prefix}-{n:07d},individual,Person {n},p{n}@example.test,1980-05-17,"
                f'female,NL,nl,middle,2024-01-0{n % 9 + 1},"{{""newsletter"": true}}"\n'
                ).encode()
        pending.append(line)
        size += len(line)
        if size >= chunk_bytes:
            data = b"".join(pending)
            pending, size = [data[chunk_bytes:]], len(data) - chunk_bytes
            yield data[:chunk_bytes]
    yield b"".join(pending)


async def test_50k_customers_stream_in_bounded_memory(sessions: Sessions) -> None:
    p, count = unique("c"), 50_000
    file_bytes = chunks = 0

    async def counted(body: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        nonlocal file_bytes
        async for chunk in body:
            file_bytes += len(chunk)
            yield chunk

    def committed(_ids: list[str]) -> None:
        nonlocal chunks
        chunks += 1

    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        started = time.perf_counter()
        report = await imports.import_customers(
            sessions, read_rows(counted(generated_csv(p, count)), "csv", "customers"),
            on_chunk=committed)
        elapsed = time.perf_counter() - started
        peak_growth = tracemalloc.get_traced_memory()[1] - baseline
    finally:
        tracemalloc.stop()
    print(f"\n50k-row import: {elapsed:.1f} s under tracemalloc, file {file_bytes / 2**20:.1f}"
          f" MiB, peak Python memory growth {peak_growth / 2**20:.2f} MiB")
    assert (report.rows_read, report.rows_imported, report.error_count) == (count, count, 0)
    assert chunks == count // 500
    async with sessions() as session:
        stored = await session.scalar(select(func.count()).select_from(CustomerRow)
                                      .where(CustomerRow.customer_id.startswith(p)))
    assert stored == count
    # The file is ~7.5 MiB and its rows as objects would be far more: what the import
    # holds at once is one chunk of rows and one request chunk.
    assert peak_growth < 16 * 2**20
