"""Every moment the SQL store hands back is aware and in UTC (services/core/db.py's
UtcDateTime), on SQLite (which keeps no offset) and PostgreSQL alike: rows, aggregates
and comparisons, whatever zone the moment was written in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.router.models import RoutedTicketRow
from services.router.store import Dispatch, RoutedTickets

CET = timezone(timedelta(hours=2))
ROUTED_AT = datetime(2026, 11, 30, 11, 0, tzinfo=CET)  # 09:00 UTC
DEADLINE = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)


async def route(sessions: async_sessionmaker[AsyncSession]) -> None:
    await RoutedTickets(sessions).record_first_dispatches([Dispatch(
        ticket_id="t-1", department="customer_care", segment="standard", priority=3,
        deadline=DEADLINE, steps=[], payload={}, at=ROUTED_AT)])


class TestUtcColumns:
    async def test_a_row_comes_back_aware_in_utc(
            self, sessions: async_sessionmaker[AsyncSession]) -> None:
        await route(sessions)
        async with sessions() as session:
            row = await session.get(RoutedTicketRow, "t-1")
        assert row is not None
        assert row.first_response_deadline == DEADLINE
        assert row.first_response_deadline is not None
        assert row.first_response_deadline.utcoffset() == timedelta(0)
        assert row.updated_at.utcoffset() == timedelta(0)

    async def test_another_zone_is_stored_as_the_same_moment(
            self, sessions: async_sessionmaker[AsyncSession]) -> None:
        await route(sessions)
        async with sessions() as session:
            row = await session.get(RoutedTicketRow, "t-1")
            earlier = (await session.scalars(select(RoutedTicketRow.ticket_id).where(
                RoutedTicketRow.updated_at < datetime(2026, 11, 30, 9, 30, tzinfo=UTC)))).all()
        assert row is not None
        assert row.updated_at == ROUTED_AT
        assert row.updated_at.tzinfo == UTC
        assert earlier == ["t-1"]

    async def test_an_aggregate_comes_back_aware(
            self, sessions: async_sessionmaker[AsyncSession]) -> None:
        await route(sessions)
        async with sessions() as session:
            oldest = (await session.execute(select(func.min(RoutedTicketRow.updated_at)))
                      ).scalar_one()
        assert oldest == ROUTED_AT
        assert oldest.tzinfo == UTC
