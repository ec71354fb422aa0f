"""The tickets held as dead letters, in the router's store (held_tickets.Held; v0030):
written by the reader of the dead letters (held_follower), forgotten when the ticket is
routed (a replay that succeeded: RoutedTickets writes it in the same transaction), with
the routed ticket's state when the retention deletes that (RoutedTickets.purge), and
past retention (the dead letter is gone from Kafka then: nothing can replay it)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.core import db, retention
from services.router.held_tickets import Held
from services.router.models import HeldTicketRow, RoutedTicketRow

_HELD = cast(Table, HeldTicketRow.__table__)
CHUNK = 500  # tickets held a transaction (as RoutedTickets.record_kept_dispatches)


class HeldTickets:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def hold(self, held: Sequence[Held], *, chunk: int = CHUNK) -> None:
        """Record tickets held, each by its latest dead letter (a ticket replayed and
        dead-lettered again is held by the new one). A ticket routed already is not: its
        dead letter was read after a replay routed it. One whose routing commits between
        this transaction's look and its insert is held all the same (the routing found
        nothing to forget): harmless while its state is kept, which the answers read
        first, and forgotten with that state (RoutedTickets.purge). `chunk` tickets a
        transaction (one IN list and one insert each: a fetch holds thousands of dead
        letters at most, a statement's parameters are bounded)."""
        latest: dict[str, Held] = {}
        for each in held:
            if each.ticket_id not in latest or latest[each.ticket_id].held_at <= each.held_at:
                latest[each.ticket_id] = each
        ordered = [latest[ticket_id] for ticket_id in sorted(latest)]
        for start in range(0, len(ordered), chunk):
            await self._hold(ordered[start:start + chunk])

    async def _hold(self, held: Sequence[Held]) -> None:
        async with self._sessions() as session, session.begin():
            routed = set((await session.scalars(select(RoutedTicketRow.ticket_id).where(
                RoutedTicketRow.ticket_id.in_([each.ticket_id for each in held])))).all())
            rows = [_values(each) for each in held if each.ticket_id not in routed]
            if not rows:
                return
            insert = db.insert_on_conflict(session.get_bind().dialect.name)(_HELD)
            await session.execute(insert.on_conflict_do_update(
                index_elements=[_HELD.c.ticket_id],
                set_={name: insert.excluded[name] for name in rows[0] if name != "ticket_id"},
                where=_HELD.c.held_at <= insert.excluded.held_at), rows)

    async def get(self, ticket_id: str) -> Held | None:
        async with self._sessions() as session:
            row = await session.get(HeldTicketRow, ticket_id)
            if row is None:
                return None
            return Held(ticket_id=row.ticket_id, dead_letter_id=row.dead_letter_id,
                        stage=row.stage, error_class=row.error_class, held_at=row.held_at,
                        platform=row.platform)

    async def among(self, ticket_ids: Collection[str], *, chunk: int = CHUNK) -> set[str]:
        """Those of `ticket_ids` held, `chunk` ids a query (a statement's parameters are
        bounded): `get`'s answer for many tickets, without the dead letters."""
        ordered, held = sorted(set(ticket_ids)), set[str]()
        async with self._sessions() as session:
            for start in range(0, len(ordered), chunk):
                held.update((await session.scalars(select(HeldTicketRow.ticket_id).where(
                    HeldTicketRow.ticket_id.in_(ordered[start:start + chunk])))).all())
        return held

    async def purge(self, before: datetime, *, chunk: int) -> int:
        """Forget the tickets held by dead letters written before `before` (retention)."""
        return await retention.delete_in_chunks(
            self._sessions, HeldTicketRow.ticket_id, HeldTicketRow.held_at < before,
            chunk=chunk)


async def forget(session: AsyncSession, ticket_ids: Collection[str]) -> None:
    """In a transaction that routes these tickets, or forgets their state: they are held
    no longer."""
    if ticket_ids:
        await session.execute(delete(HeldTicketRow).where(
            HeldTicketRow.ticket_id.in_(list(ticket_ids))))


def _values(held: Held) -> dict[str, Any]:
    return {"ticket_id": held.ticket_id, "dead_letter_id": held.dead_letter_id,
            "stage": held.stage, "error_class": held.error_class, "held_at": held.held_at,
            "platform": held.platform}

