"""Ticket timelines in the SQL store."""

from __future__ import annotations

from dataclasses import fields
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, String, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Mapped, mapped_column

from services.core.db import Base
from services.metrics.timeline import Timeline

Moment = Mapped[datetime | None]


class TimelineRow(Base):
    __tablename__ = "ticket_timelines"

    ticket_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    department: Mapped[str | None] = mapped_column(String(63), index=True)
    segment: Mapped[str | None] = mapped_column(String(63), index=True)
    routing_reason: Mapped[str | None] = mapped_column(String(32))
    received_at: Moment = mapped_column(DateTime(timezone=True))
    segmented_at: Moment = mapped_column(DateTime(timezone=True))
    routed_at: Moment = mapped_column(DateTime(timezone=True), index=True)
    picked_up_at: Moment = mapped_column(DateTime(timezone=True))
    first_response_at: Moment = mapped_column(DateTime(timezone=True))
    resolved_at: Moment = mapped_column(DateTime(timezone=True))
    observed: Mapped[str] = mapped_column(String(200), default="")


_MOMENTS = [f.name for f in fields(Timeline) if f.name.endswith("_at")]


def to_timeline(row: TimelineRow) -> Timeline:
    moments = {name: _aware(getattr(row, name)) for name in _MOMENTS}
    return Timeline(
        ticket_id=row.ticket_id, department=row.department, segment=row.segment,
        routing_reason=row.routing_reason,
        observed=frozenset(filter(None, row.observed.split(","))), **moments,
    )


def _aware(moment: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes; everything we store is UTC.
    if moment is not None and moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment


def _columns(timeline: Timeline) -> dict[str, Any]:
    values = {f.name: getattr(timeline, f.name) for f in fields(Timeline)}
    values["observed"] = ",".join(sorted(timeline.observed))
    return values


class TimelineStore:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def get(self, session: AsyncSession, ticket_id: str) -> Timeline:
        row = await session.get(TimelineRow, ticket_id, with_for_update=True)
        return to_timeline(row) if row else Timeline(ticket_id=ticket_id)

    async def save(self, session: AsyncSession, timeline: Timeline) -> None:
        await session.merge(TimelineRow(**_columns(timeline)))

    async def routed_since(self, since: datetime, department: str | None = None,
                           segment: str | None = None) -> list[Timeline]:
        query = select(TimelineRow).where(TimelineRow.routed_at >= since)
        if department is not None:
            query = query.where(TimelineRow.department == department)
        if segment is not None:
            query = query.where(TimelineRow.segment == segment)
        async with self._sessions() as session:
            return [to_timeline(row) for row in (await session.scalars(query)).all()]

    async def open_tickets(self, department: str | None = None) -> list[Timeline]:
        query = select(TimelineRow).where(TimelineRow.routed_at.is_not(None),
                                          TimelineRow.resolved_at.is_(None))
        if department is not None:
            query = query.where(TimelineRow.department == department)
        async with self._sessions() as session:
            return [to_timeline(row) for row in (await session.scalars(query)).all()]
