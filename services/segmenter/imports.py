"""Bulk import into the customer store: checked rows written in chunks, nothing half-written.

A chunk is one transaction. If the database refuses a chunk for a reason the row checks
did not catch, the chunk is written again row by row, each row its own transaction, so
only the offending rows are refused. Committed chunks stay committed if a later one fails.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC
from typing import Any, TypeVar

from sqlalchemy import insert, select
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_sessionmaker

from services.core import db
from services.segmenter.models import CustomerRow, PurchaseRow
from services.segmenter.rows import CustomerRecord, Kind, PurchaseRecord, RowError

ERRORS_KEPT = 1000
NO_SUCH_CUSTOMER = "no such customer_id: import the customer first"
# Database messages quote the values they refused: reasons name only the kind of refusal.
REFUSED = {IntegrityError: "refused by the database: a constraint failed",
           DataError: "refused by the database: a value does not fit its column"}

OnChunk = Callable[[list[str]], Awaitable[None] | None]
Values = dict[str, Any]
Write = Callable[[AsyncConnection, list[Values]], Awaitable[None]]
R = TypeVar("R", CustomerRecord, PurchaseRecord)


@dataclass(frozen=True)
class ImportReport:
    kind: Kind
    rows_read: int  # data rows and refused rows seen, blank lines and the CSV header not
    rows_imported: int
    error_count: int
    errors: tuple[RowError, ...]  # the first ERRORS_KEPT refusals, by line


async def import_customers(sessions: async_sessionmaker[AsyncSession],
                           rows: AsyncIterator[CustomerRecord | RowError],
                           chunk_size: int = 500, *,
                           on_chunk: OnChunk | None = None) -> ImportReport:
    """Upsert customers: a new id is inserted, a known one gets the fields the row gives
    (in CSV every column of the header; an empty cell clears the field)."""
    return await _import("customers", sessions, rows, chunk_size, on_chunk, _customers_chunk)


async def import_purchases(sessions: async_sessionmaker[AsyncSession],
                           rows: AsyncIterator[PurchaseRecord | RowError],
                           chunk_size: int = 500, *,
                           on_chunk: OnChunk | None = None) -> ImportReport:
    """Insert purchases; one whose customer is not in the store is refused."""
    return await _import("purchases", sessions, rows, chunk_size, on_chunk, _purchases_chunk)


ChunkWriter = Callable[[async_sessionmaker[AsyncSession], list[R]],
                       Awaitable[tuple[list[R], list[RowError]]]]


async def _import(kind: Kind, sessions: async_sessionmaker[AsyncSession],
                  rows: AsyncIterator[R | RowError], chunk_size: int,
                  on_chunk: OnChunk | None, write_chunk: ChunkWriter[R]) -> ImportReport:
    if chunk_size < 1:
        raise ValueError("chunk_size must be at least 1")
    read = imported = error_count = 0
    errors: list[RowError] = []

    def refuse(refused: Sequence[RowError]) -> None:
        nonlocal error_count
        error_count += len(refused)
        errors.extend(refused[:max(0, ERRORS_KEPT - len(errors))])

    async def flush(chunk: list[R]) -> None:
        nonlocal imported
        written, refused = await write_chunk(sessions, chunk)
        imported += len(written)
        refuse(refused)
        if written and on_chunk is not None:
            done = on_chunk(list(dict.fromkeys(row.customer_id for row in written)))
            if inspect.isawaitable(done):
                await done

    chunk: list[R] = []
    async for row in rows:
        read += 1
        if isinstance(row, RowError):
            refuse([row])
            continue
        chunk.append(row)
        if len(chunk) >= chunk_size:
            await flush(chunk)
            chunk = []
    if chunk:
        await flush(chunk)
    return ImportReport(kind, read, imported, error_count,
                        tuple(sorted(errors, key=lambda error: error.line)))


async def _customers_chunk(sessions: async_sessionmaker[AsyncSession],
                           chunk: list[CustomerRecord]
                           ) -> tuple[list[CustomerRecord], list[RowError]]:
    return await _all_or_each(sessions, chunk, _upsert_customers)


async def _purchases_chunk(sessions: async_sessionmaker[AsyncSession],
                           chunk: list[PurchaseRecord]
                           ) -> tuple[list[PurchaseRecord], list[RowError]]:
    async with sessions() as session:
        wanted = {row.customer_id for row in chunk}
        known = set((await session.scalars(
            select(CustomerRow.customer_id).where(CustomerRow.customer_id.in_(wanted)))).all())
    written, refused = await _all_or_each(
        sessions, [row for row in chunk if row.customer_id in known], _insert_purchases)
    refused += [RowError(row.line, NO_SUCH_CUSTOMER) for row in chunk
                if row.customer_id not in known]
    return written, refused


async def _all_or_each(sessions: async_sessionmaker[AsyncSession], chunk: list[R],
                       write: Write) -> tuple[list[R], list[RowError]]:
    """Write the chunk in one transaction; if refused, each row in its own."""
    if not chunk:
        return [], []
    try:
        async with sessions() as session, session.begin():
            await write(await session.connection(), [_values(row) for row in chunk])
        return chunk, []
    except (IntegrityError, DataError):
        pass
    written: list[R] = []
    refused: list[RowError] = []
    for row in chunk:
        try:
            async with sessions() as session, session.begin():
                await write(await session.connection(), [_values(row)])
            written.append(row)
        except (IntegrityError, DataError) as error:
            refused.append(RowError(row.line, REFUSED[
                IntegrityError if isinstance(error, IntegrityError) else DataError]))
    return written, refused


def _values(row: CustomerRecord | PurchaseRecord) -> Values:
    values = row.given()
    if isinstance(row, PurchaseRecord):
        # SQLite keeps no offset: every instant is stored in UTC.
        values["purchased_at"] = row.purchased_at.astimezone(UTC)
    elif "customer_type" in values:
        values["customer_type"] = row.customer_type.value
    return values


async def _upsert_customers(connection: AsyncConnection, rows: list[Values]) -> None:
    # One statement may not touch a row twice (PostgreSQL refuses): a customer given twice
    # in a chunk is written once with the later fields over the earlier ones, which is
    # what writing them one after the other would give.
    merged: dict[str, Values] = {}
    for values in rows:
        merged[values["customer_id"]] = {**merged.get(values["customer_id"], {}), **values}
    # Rows giving different fields need different statements.
    by_fields: dict[frozenset[str], list[Values]] = {}
    for values in merged.values():
        by_fields.setdefault(frozenset(values), []).append(values)
    upsert = db.insert_on_conflict(connection.dialect.name)
    for fields, group in by_fields.items():
        statement = upsert(CustomerRow)
        statement = statement.on_conflict_do_update(
            index_elements=[CustomerRow.customer_id],
            set_={name: statement.excluded[name] for name in sorted(fields)
                  if name != "customer_id"})
        await connection.execute(statement, group)


async def _insert_purchases(connection: AsyncConnection, rows: list[Values]) -> None:
    await connection.execute(insert(PurchaseRow), rows)
