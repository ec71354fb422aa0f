"""Erasing a customer, the router's side: their tickets as the router keeps them go, with
those tickets' intake keys, and the erasure is remembered. A ticket of theirs received
before it and still in Kafka then (on its way to the router, or a dead letter replayed
later) is routed all the same (its department's lane ages out with the topic's
retention), but the router does not keep it: its copy is what the erasure deleted, and a
report on it gets the answer for a ticket the router does not know."""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Table, bindparam, delete, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.core import db, retention
from services.router.models import ErasedCustomerRow, IntakeKeyRow, RoutedTicketRow


def forgotten(received_at: datetime, erased_at: datetime | None) -> bool:
    """Whether a ticket received at `received_at` is one its customer's erasure (the
    latest, at `erased_at`) forgot: received at or before it. One received after is a new
    contact, kept as any."""
    return erased_at is not None and erased_at >= received_at


@dataclass(frozen=True)
class ErasedTickets:
    tickets: int  # routed_tickets rows: state, trace and the ticket's copy
    idempotency_keys: int


_TABLE: Table = ErasedCustomerRow.__table__  # type: ignore[assignment]


async def erase_tickets_of(session: AsyncSession, customer_id: str, *,
                           at: datetime) -> ErasedTickets:
    """Delete a customer's tickets as the router keeps them, and their intake keys, and
    remember the erasure (at `at`), in the caller's transaction."""
    await _hold(session, [customer_id], exclusive=True)
    ticket_ids = select(RoutedTicketRow.ticket_id).where(
        RoutedTicketRow.customer_id == customer_id)
    # Their rows locked in ticket order before they are deleted, as the other writers of
    # several tickets' rows lock them (RoutedTickets); their intake keys in key order, as
    # the keys' retention purge locks them.
    await db.lock_in_key_order(session, RoutedTicketRow.ticket_id,
                               RoutedTicketRow.customer_id == customer_id)
    await db.lock_in_key_order(session, IntakeKeyRow.idempotency_key,
                               IntakeKeyRow.ticket_id.in_(ticket_ids))
    keys = await session.execute(delete(IntakeKeyRow).where(
        IntakeKeyRow.ticket_id.in_(ticket_ids)))
    tickets = await session.execute(delete(RoutedTicketRow).where(
        RoutedTicketRow.customer_id == customer_id))
    insert = db.insert_on_conflict(session.get_bind().dialect.name)(_TABLE)
    await session.execute(insert.values(customer_id=customer_id, erased_at=at)
                          .on_conflict_do_update(
                              index_elements=[_TABLE.c.customer_id],
                              set_={"erased_at": insert.excluded.erased_at},
                              where=_TABLE.c.erased_at < insert.excluded.erased_at))
    return ErasedTickets(tickets=tickets.rowcount,  # type: ignore[attr-defined]
                         idempotency_keys=keys.rowcount)  # type: ignore[attr-defined]


_ERASED_AT = select(_TABLE.c.customer_id, _TABLE.c.erased_at).where(
    _TABLE.c.customer_id.in_(bindparam("customer_ids", expanding=True)))
# SQLite: the same read as a write that changes nothing, so that the statement that reads
# the erasures also takes the store's write lock, held to the end of the transaction (why
# a write: db.hold_store). One statement where hold_store and then the read would be two:
# a round trip to the driver's thread fewer on every router batch.
_ERASED_AT_HELD = update(_TABLE).where(
    _TABLE.c.customer_id.in_(bindparam("customer_ids", expanding=True))).values(
    erased_at=_TABLE.c.erased_at).returning(_TABLE.c.customer_id, _TABLE.c.erased_at)


async def erased_at(session: AsyncSession,
                    customer_ids: Collection[str]) -> Mapping[str, datetime]:
    """When each of these customers was last erased (those remembered), in one query;
    until the caller's transaction ends no erasure of theirs commits, so that a ticket
    found not forgotten is not written after its customer's erasure deleted their
    tickets."""
    if not customer_ids:
        return {}
    ids = {"customer_ids": sorted(customer_ids)}
    if session.get_bind().dialect.name == "postgresql":
        await _hold(session, customer_ids, exclusive=False)
        rows = await session.execute(_ERASED_AT, ids)
    else:
        rows = await session.execute(_ERASED_AT_HELD, ids)
    return {customer_id: at for customer_id, at in rows}


async def _hold(session: AsyncSession, customer_ids: Collection[str], *,
                exclusive: bool) -> None:
    """Serialise erasures (`exclusive`) with the writes of these customers' tickets, to
    the end of the transaction. PostgreSQL: an advisory lock per customer, taken in one
    order (no deadlock between writers). SQLite: its write lock, which a transaction
    holds from its first write (db.hold_store says why); nothing to do here, since an
    erasure's first statement is a write, and so is the statement that reads the
    erasures, `_ERASED_AT_HELD`."""
    if session.get_bind().dialect.name == "postgresql":
        lock = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
        await session.execute(
            text(f"SELECT {lock}(key) FROM unnest(CAST(:keys AS bigint[])) AS key"
                 " ORDER BY key"), {"keys": sorted({_lock_key(c) for c in customer_ids})})


def _lock_key(customer_id: str) -> int:
    digest = hashlib.blake2b(f"erasure:{customer_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class ErasedCustomers:
    """The erasures remembered, purged once Kafka can no longer bring back a ticket
    received before them (retention.ERASURES_REMEMBERED)."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def purge(self, before: datetime, *, chunk: int) -> int:
        return await retention.delete_in_chunks(
            self._sessions, ErasedCustomerRow.customer_id,
            ErasedCustomerRow.erased_at < before, chunk=chunk)
