"""Ticket timelines in the SQL store."""

from __future__ import annotations

import functools
import operator
from collections import Counter
from collections.abc import AsyncGenerator
from dataclasses import fields
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Index,
    Insert,
    Row,
    Select,
    String,
    Text,
    and_,
    bindparam,
    cast,
    func,
    or_,
    select,
    text,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_sessionmaker
from sqlalchemy.orm import Mapped, mapped_column

from services.core import db, events, identifiers, lifecycle, retention, targets, topics
from services.core.db import Base
from services.metrics import stats
from services.metrics.timeline import Assignment, Timeline, built

Moment = Mapped[datetime | None]


# A report's window is read this many timelines at a time: the rows of one statement,
# fetched a page at a time, each page counted and let go before the next is read, so
# a long window neither fills the memory nor holds the event loop (tests/integration/
# test_timelines.py, TestALongWindow).
PAGE_ROWS = 1000

_UNDECIDED = text("target_outcome IS NULL")
# A ticket open (lifecycle.py: routed, not resolved), as the partial index and the
# queries it serves say it: one text, so that the index is used.
_OPEN = text("routed_at IS NOT NULL AND resolved_at IS NULL")


class TimelineRow(Base):
    __tablename__ = "ticket_timelines"
    # The polls' (past_deadline, open_per_department): they read only the undecided or
    # open tickets, not every timeline kept (v0014).
    __table_args__ = (
        Index("ix_ticket_timelines_undecided_deadline", "first_response_deadline",
              sqlite_where=_UNDECIDED, postgresql_where=_UNDECIDED),
        Index("ix_ticket_timelines_open_department", "department",
              sqlite_where=_OPEN, postgresql_where=_OPEN),
        # The reports' window (routed since: a department's, a segment's, parity) and
        # the retention purge's, which takes a ticket never routed by when it was
        # received (v0016).
        Index("ix_ticket_timelines_routed_received", "routed_at", "received_at"),
    )

    ticket_id: Mapped[str] = mapped_column(String(identifiers.MAX_LENGTH), primary_key=True)
    department: Mapped[str | None] = mapped_column(String(topics.MAX_NAME), index=True)
    segment: Mapped[str | None] = mapped_column(String(topics.MAX_NAME), index=True)
    routing_reason: Mapped[str | None] = mapped_column(String(events.MAX_ROUTING_REASON))
    received_at: Moment = mapped_column(db.UtcDateTime())
    segmented_at: Moment = mapped_column(db.UtcDateTime())
    routed_at: Moment = mapped_column(db.UtcDateTime())
    picked_up_at: Moment = mapped_column(db.UtcDateTime())
    first_response_at: Moment = mapped_column(db.UtcDateTime())
    resolved_at: Moment = mapped_column(db.UtcDateTime())
    escalated_at: Moment = mapped_column(db.UtcDateTime())
    transferred_at: Moment = mapped_column(db.UtcDateTime())
    first_response_deadline: Moment = mapped_column(db.UtcDateTime(), index=True)
    target_outcome: Mapped[str | None] = mapped_column(String(8))
    target_department: Mapped[str | None] = mapped_column(String(topics.MAX_NAME))
    # [{kind, department, at, reason, from_department, counted}, ...] in time order.
    assignments: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    observed: Mapped[str] = mapped_column(String(200), default="")
    paused_at: Moment = mapped_column(db.UtcDateTime())
    clock_moved_at: Moment = mapped_column(db.UtcDateTime())  # v0031
    # Keys of the clock notices counted (clock_events.py), so a replay counts none again.
    clock_notices: Mapped[list[str] | None] = mapped_column(JSON)


# A department's backlog (lifecycle.py), as a timeline's row tells its facts: waiting on
# the customer while its clocks are paused.
_BACKLOG = lifecycle.backlog_where(
    open_ticket=_OPEN, answered=TimelineRow.first_response_at.is_not(None),
    waiting_on_customer=TimelineRow.paused_at.is_not(None))
_FIELDS = [f.name for f in fields(Timeline)]
_MOMENTS = [f.name for f in fields(Timeline)
            if f.name.endswith("_at") or f.name == "first_response_deadline"]
_moments_of = operator.attrgetter(*_MOMENTS)  # read in one call: half a dict's cost


def _open(*columns: Any, backlog: bool) -> Select[Any]:
    """The open tickets' columns (lifecycle's open); with `backlog`, of its backlog."""
    return select(*columns).where(*_BACKLOG) if backlog else select(*columns).where(_OPEN)


def to_timeline(row: TimelineRow | Row[Any]) -> Timeline:
    """A timeline from its row: an ORM object or a plain row (cheaper: what the stage's
    batches and the reports read, by the thousand)."""
    moments = dict(zip(_MOMENTS, _moments_of(row), strict=True))
    observed = frozenset(filter(None, row.observed.split(",")))
    assignments = tuple(_assignment(item) for item in row.assignments or [])
    if not assignments and row.department and row.routed_at:
        # A row from before assignments were kept: its routing, counted if observed.
        assignments = (Assignment("routed", row.department, row.routed_at,
                                  row.routing_reason or "route",
                                  counted="routed" in observed),)
    return built(
        ticket_id=row.ticket_id, department=row.department, segment=row.segment,
        routing_reason=row.routing_reason, target_outcome=row.target_outcome,
        target_department=row.target_department,
        assignments=assignments, observed=observed,
        clock_notices=frozenset(row.clock_notices or []), **moments,
    )


def _assignment(item: dict[str, Any]) -> Assignment:
    return Assignment(kind=item["kind"], department=item["department"],
                      at=datetime.fromisoformat(item["at"]), reason=item["reason"],
                      from_department=item.get("from_department"),
                      counted=bool(item.get("counted")))


def _columns(timeline: Timeline) -> dict[str, Any]:
    values = {name: getattr(timeline, name) for name in _FIELDS}
    values["observed"] = ",".join(sorted(timeline.observed))
    values["clock_notices"] = sorted(timeline.clock_notices)
    values["assignments"] = [
        {"kind": a.kind, "department": a.department, "at": a.at.isoformat(),
         "reason": a.reason, "from_department": a.from_department, "counted": a.counted}
        for a in timeline.assignments]
    return values


# A transaction's connection (what the stage's updates use: a Core transaction costs
# less than an ORM session's) or a session.
Executor = AsyncSession | AsyncConnection
_TABLE = Base.metadata.tables[TimelineRow.__tablename__]
# Built once, not per batch (building them, the upsert's `excluded` above all, cost more
# than running them), and Core statements on the table, not the ORM's bulk insert.
# Locked in the tickets' order, whatever the plan reads them in (PostgreSQL locks rows
# as its plan returns them): two transactions locking shared timelines, two instances'
# batches during a hand-over of partitions or a batch and the deadline check, take them
# in one order, so neither holds one the other waits for while it waits (a deadlock).
_READ_LOCKED = (select(_TABLE)
                .where(_TABLE.c.ticket_id.in_(bindparam("ticket_ids", expanding=True)))
                .order_by(_TABLE.c.ticket_id)
                .with_for_update())


@functools.cache
def _upsert(dialect: str) -> Insert:
    """Insert a timeline, or replace the one of its ticket."""
    insert = db.insert_on_conflict(dialect)
    statement = insert(_TABLE)
    return statement.on_conflict_do_update(
        index_elements=[_TABLE.c.ticket_id],
        set_={column.name: statement.excluded[column.name] for column in _TABLE.columns
              if column.name != "ticket_id"})


class TimelineStore:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def get_many(self, session: Executor, ticket_ids: set[str]) -> dict[str, Timeline]:
        """The tickets' timelines, locked for update; a new one for a ticket not seen."""
        # Plain rows, not ORM objects: read once and written back in one statement.
        rows = (await session.execute(_READ_LOCKED, {"ticket_ids": list(ticket_ids)})
                ).all() if ticket_ids else []
        found = {row.ticket_id: to_timeline(row) for row in rows}
        return {ticket_id: found.get(ticket_id) or Timeline(ticket_id=ticket_id)
                for ticket_id in ticket_ids}

    async def save(self, session: Executor, timeline: Timeline) -> None:
        await self.save_many(session, [timeline])

    async def save_many(self, session: Executor, timelines: list[Timeline]) -> None:
        """Insert or replace the timelines in one statement, in the tickets' order: a
        new timeline's row is locked as it is inserted, so two transactions inserting
        the same new tickets take them in one order (see _READ_LOCKED)."""
        if timelines:
            dialect = session.dialect if isinstance(session, AsyncConnection) \
                else session.get_bind().dialect
            await session.execute(_upsert(dialect.name), [
                _columns(timeline)
                for timeline in sorted(timelines, key=lambda timeline: timeline.ticket_id)])

    async def routed_pages(self, since: datetime, department: str | None = None,
                           ) -> AsyncGenerator[list[Timeline], None]:
        """Tickets routed since `since`, PAGE_ROWS at a time, as one statement whose rows
        are fetched a page at a time. For a department: those it holds, and every ticket
        that changed hands (stats.Tally tells which it held)."""
        query = select(_TABLE).where(TimelineRow.routed_at >= since)
        if department is not None:
            query = query.where(or_(TimelineRow.department == department,
                                    TimelineRow.escalated_at.is_not(None),
                                    TimelineRow.transferred_at.is_not(None)))
        async with self._sessions() as session:
            rows = await session.stream(query.execution_options(yield_per=PAGE_ROWS))
            try:
                async for page in rows.partitions():
                    yield [to_timeline(row) for row in page]
            finally:  # a reader that stopped early: its cursor closed before the session
                await rows.close()

    async def open_per_department(self, *, backlog: bool = False) -> dict[str, int]:
        """Tickets routed and not resolved (lifecycle's open), per department that holds
        them now; with `backlog`, only those awaiting a first response, not waiting on
        the customer (lifecycle's backlog)."""
        query = (_open(TimelineRow.department, func.count(), backlog=backlog)
                 .where(TimelineRow.department.is_not(None))
                 .group_by(TimelineRow.department))
        async with self._sessions() as session:
            rows = (await session.execute(query)).all()
        return {department: count for department, count in rows if department is not None}

    async def open_per_segment(self, *, backlog: bool = False) -> dict[str, int]:
        """The same per segment, counted here: grouped in the statement, its plan reads
        every timeline with a segment (by the segment's index), not only the open ones."""
        async with self._sessions() as session:
            segments = (await session.scalars(_open(TimelineRow.segment, backlog=backlog))
                        ).all()
        return dict(Counter(segment for segment in segments if segment))

    async def ever_held(self, department: str) -> bool:
        """Whether a kept timeline was ever in the department's hands (stats.held_by):
        one it holds or held last, found by the department's index; else one it handed
        on, among the tickets escalated or transferred whose hand-overs name it (their
        text searched by the store, each found checked here)."""
        holds = select(TimelineRow.ticket_id).where(TimelineRow.department == department)
        handed_on = select(_TABLE).where(
            or_(TimelineRow.escalated_at.is_not(None), TimelineRow.transferred_at.is_not(None)),
            cast(TimelineRow.assignments, Text).contains(f'"{department}"', autoescape=True))
        async with self._sessions() as session:
            if await session.scalar(holds.limit(1)) is not None:
                return True
            rows = await session.stream(handed_on.execution_options(yield_per=PAGE_ROWS))
            try:
                async for page in rows.partitions():
                    if any(stats.held_by(to_timeline(row), department) for row in page):
                        return True
            finally:
                await rows.close()
        return False

    async def past_deadline(self, as_of: datetime, limit: int = 500) -> list[str]:
        """Tickets whose first-response deadline passed by `as_of`, target not decided."""
        query = (select(TimelineRow.ticket_id)
                 .where(targets.past_due_where(TimelineRow.first_response_deadline, as_of),
                        TimelineRow.target_outcome.is_(None),
                        # Without these a target cannot be credited yet: not due.
                        TimelineRow.department.is_not(None),
                        TimelineRow.segment.is_not(None))
                 .order_by(TimelineRow.first_response_deadline).limit(limit))
        async with self._sessions() as session:
            return list((await session.scalars(query)).all())

    async def purge(self, before: datetime, *, chunk: int) -> int:
        """Delete timelines of tickets routed before `before` (retention); one never
        routed goes by when it was received."""
        return await retention.delete_in_chunks(
            self._sessions, TimelineRow.ticket_id,
            or_(TimelineRow.routed_at < before,
                and_(TimelineRow.routed_at.is_(None), TimelineRow.received_at < before)),
            chunk=chunk)
