"""Reading a past window for the simulator from the SQL store, read only.

What happened comes from the ticket timelines the metrics service keeps from the event
log (received, routed to, first response, deadline, escalation); what a ticket was comes
from the router's stored state (the routed ticket as dispatched: its content, tier and
whether it overflowed); a candidate rule set reads the customers in the customer store
as they are now (the store keeps no past profiles). A ticket without that state is not
replayed: counted held if the router holds it as a dead letter (its held store's), else
as one whose state is gone. On PostgreSQL the reader's transactions are read only, so
the simulator cannot write even by mistake.

Parity groups: `groups_of` turns a customer into {attribute: group} (e.g. an age band);
without it (the default) the comparison has no group section. It is where the service
parity's grouping plugs in.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Container, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from services.core import db, tickets, tiers
from services.metrics import service_levels
from services.metrics import store as timelines
from services.metrics.timeline import Timeline
from services.router import held_store, routing
from services.router.models import RoutedTicketRow
from services.segmenter import context
from services.segmenter.cache import CustomerCache
from services.segmenter.profiles import Customer
from services.segmenter.store import CustomerStore
from services.simulator import engine

GroupsOf = Callable[[Customer], Mapping[str, str]]
PRELOAD_CHUNK = 1000


def read_only_sessions(store: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions whose transactions PostgreSQL runs read only (SQLite ignores it)."""
    return db.sessions(store.execution_options(postgresql_readonly=True))


@dataclass(frozen=True)
class Unreplayed:
    """The tickets of a window that have a timeline but no routed state to replay."""

    held: int  # held as dead letters: never routed yet; the router routes them if replayed
    without_state: int  # the others: their state is gone (retention)


@dataclass(frozen=True)
class Window:
    tickets: list[engine.HistoricTicket]
    unreplayed: Unreplayed


def unreplayed(stateless: Collection[str], held: Container[str]) -> Unreplayed:
    """Of the tickets without a routed state (`stateless`), how many are `held` (the
    held store's) and how many lost their state. One with a state is replayed, held or
    not: the router answers from its state first, as here."""
    count = sum(1 for ticket_id in stateless if ticket_id in held)
    return Unreplayed(held=count, without_state=len(stateless) - count)


class HistoryReader:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], *,
                 groups_of: GroupsOf | None = None, minimum_group_size: int = 1) -> None:
        self._sessions = sessions
        self._held = held_store.HeldTickets(sessions)
        self._groups_of = groups_of
        self._minimum_group_size = minimum_group_size

    async def window(self, start: datetime, end: datetime, *,
                     with_customers: bool) -> Window:
        """The tickets received in [start, end), in the order received."""
        async with self._sessions() as session:
            rows = (await session.execute(
                select(timelines.TimelineRow, RoutedTicketRow.payload)
                .outerjoin(RoutedTicketRow,
                           RoutedTicketRow.ticket_id == timelines.TimelineRow.ticket_id)
                .where(timelines.TimelineRow.received_at >= start,
                       timelines.TimelineRow.received_at < end)
                .order_by(timelines.TimelineRow.received_at))).all()
        found = [(timelines.to_timeline(row), payload) for row, payload in rows]
        states = {timeline.ticket_id: payload for timeline, payload in found
                  if payload is not None}
        customers = await self._customers(states, end) \
            if with_customers or self._groups_of else {}
        history, now = [], datetime.now(UTC)
        for timeline, payload in found:
            if payload is not None and timeline.received_at is not None:
                history.append(self._historic(timeline, timeline.received_at, payload,
                                              customers, with_customers, now=now))
        stateless = [timeline.ticket_id for timeline, payload in found if payload is None]
        return Window(pool_small_groups(history, self._minimum_group_size),
                      unreplayed(stateless, await self._held.among(stateless)))

    async def _customers(self, states: Mapping[str, Mapping[str, Any]],
                         now: datetime) -> dict[str, Customer]:
        ids = {str(payload["customer_id"]) for payload in states.values()}
        store = CustomerStore(self._sessions, cache=CustomerCache(
            max_customers=len(ids) + 1, ttl_seconds=3600))
        await store.load_cutoffs()
        ordered = sorted(ids)
        for first in range(0, len(ordered), PRELOAD_CHUNK):  # bounded query parameters
            await store.preload(set(ordered[first:first + PRELOAD_CHUNK]))
        return {customer_id: customer for customer_id in ids
                if (customer := store.cached_customer(customer_id, now=now))}

    def _historic(self, timeline: Timeline, received_at: datetime,
                  payload: Mapping[str, Any], customers: Mapping[str, Customer],
                  with_customers: bool, *, now: datetime) -> engine.HistoricTicket:
        ticket = tickets.Ticket.model_validate(payload)
        segmentation = payload.get("segmentation") or {}
        routed = payload.get("routing") or {}
        customer = customers.get(ticket.customer_id)
        groups = dict(self._groups_of(customer)) if self._groups_of and customer else {}
        first = timeline.assignments[0].department if timeline.assignments else None
        actual = engine.Served(
            timeline.ticket_id, first or timeline.department or routed.get("department", ""),
            timeline.segment or segmentation.get("segment", ""), received_at,
            timeline.first_response_at, timeline.first_response_deadline,
            overflowed_from=routed.get("overflowed_from"),
            escalated=first_response_late(timeline, now), groups=groups,
            routed_at=timeline.routed_at, clock_moved_at=timeline.clock_moved_at,
            target_outcome=timeline.target_outcome)
        evaluation = context.build(customer, ticket, today=received_at.date()) \
            if with_customers and customer else None
        return engine.HistoricTicket(
            timeline.ticket_id, received_at, actual.segment,
            str(segmentation.get("tier", tiers.Tier.POTENTIAL)), routing.view_of(ticket),
            evaluation, actual, groups)


def first_response_late(timeline: Timeline, now: datetime) -> bool:
    """What the simulated side counts as escalated (engine.replicate): the first
    response missed, late or still missing past its deadline by `now`, by the metrics'
    verdict where the timeline has one (`target_outcome`: one answered while its clock
    was paused has no deadline to tell it by); not every escalation the timeline saw (a
    resolution or next-response target breached, a second level)."""
    return service_levels.first_response_verdict(
        timeline.target_outcome, timeline.first_response_at,
        timeline.first_response_deadline, now, last_move=timeline.clock_moved_at) == "missed"


SUPPRESSED = "suppressed"


def pool_small_groups(history: list[engine.HistoricTicket],
                      minimum: int) -> list[engine.HistoricTicket]:
    """Groups of fewer than `minimum` tickets pooled as `suppressed`, so that no small
    group of customers is identifiable in a simulation (as in the service parity)."""
    sizes = Counter((a, g) for ticket in history for a, g in ticket.groups.items())
    if all(size >= minimum for size in sizes.values()):
        return history
    pooled = []
    for ticket in history:
        groups = {a: g if sizes[(a, g)] >= minimum else SUPPRESSED
                  for a, g in ticket.groups.items()}
        pooled.append(replace(ticket, groups=groups,
                              actual=replace(ticket.actual, groups=groups)))
    return pooled
