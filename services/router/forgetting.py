"""The router forgetting tickets it kept: each one still open is announced on
`tickets.events` as `ticket.forgotten` (with why: events.FORGOTTEN_REASONS), so that the
metrics service counts it open no more either (lifecycle.py: one definition of open).

Announced before its state is deleted, in the deleting transaction, and the delete
waits for the broker's acknowledgement: a publish that fails rolls the delete back (the
ticket is forgotten on the next try, and announced then), and a delete that fails after
the publish leaves a ticket announced and kept, announced again when it is deleted (the
metrics service keeps the first). No announcement can be lost behind a delete. Ids,
department and a reason alone: no personal data."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import ColumnElement, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.core import events, lifecycle, retention, topics
from services.router.models import RoutedTicketRow

if TYPE_CHECKING:  # the router's store imports this module, and the simulator, which
    # reads the store, loads no Kafka client (test_the_simulator_loads_no_kafka_client)
    from services.core import kafka

# What announces them: a publisher's `publish`, returning once the broker acknowledged.
Announce = Callable[[Sequence["kafka.Publishable"]], Awaitable[None]]


def announcement(ticket_id: str, *, reason: str, at: datetime,
                 correlation_id: str | None = None, department: str | None = None,
                 received_at: datetime | None = None) -> kafka.Output:
    """The `ticket.forgotten` of one ticket, keyed by it (its partition: after its other
    events)."""
    from services.core import kafka  # only where one is announced (the module's imports)

    forgotten = events.TicketEvent(ticket_id=ticket_id, type=events.TicketEventType.FORGOTTEN,
                                   occurred_at=at, reason=reason, department=department,
                                   received_at=received_at)
    return kafka.Output(topics.EVENTS, ticket_id, events.as_envelope(
        forgotten, correlation_id or ticket_id, events.ROUTER_SOURCE))


async def announce_open(session: AsyncSession, which: ColumnElement[bool], *,
                        reason: str, at: datetime, announce: Announce) -> int:
    """Announce the open tickets among the router's rows `which` (locked by the caller,
    about to be deleted in its transaction); how many."""
    rows = (await session.execute(
        select(RoutedTicketRow.ticket_id, RoutedTicketRow.correlation_id,
               RoutedTicketRow.department)
        .where(which, RoutedTicketRow.status.in_(lifecycle.OPEN))
        .order_by(RoutedTicketRow.ticket_id))).all()
    if rows:
        await announce([announcement(row.ticket_id, reason=reason, at=at,
                                     correlation_id=row.correlation_id,
                                     department=row.department) for row in rows])
    return len(rows)


def keys_announced(announce: Announce, *, reason: str,
                   at: Callable[[], datetime]) -> retention.Along:
    """What a chunk of the retention purge does with the ticket ids it locked, before it
    deletes them: announces the open ones (retention.delete_in_chunks' `before_delete`)."""
    async def announced(session: AsyncSession, ticket_ids: Sequence[Any]) -> None:
        await announce_open(session, RoutedTicketRow.ticket_id.in_(list(ticket_ids)),
                            reason=reason, at=at(), announce=announce)
    return announced


class StatesPurge(Protocol):
    """The ticket states' purge (store.RoutedTickets.purge)."""

    async def purge(self, before: datetime, *, chunk: int,
                    announce: Announce | None) -> int: ...


@dataclass(frozen=True)
class AnnouncedPurge:
    """The ticket states' purge as the retention job runs it (retention.Purgeable): the
    open tickets it deletes announced on `announce`."""

    states: StatesPurge
    announce: Announce

    async def purge(self, before: datetime, *, chunk: int) -> int:
        return await self.states.purge(before, chunk=chunk, announce=self.announce)
