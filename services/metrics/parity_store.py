"""Service parity over the measured timelines: each ticket's customer is found through
the router's ticket state (`routed_tickets.customer_id`) and their protected attributes
in the customer store, here at the metrics side. Lifecycle events and tickets carry no
personal data, and only bands leave this module.

A ticket whose routing state is gone (retention, erasure) or whose customer the store
does not know counts in the `unknown` band.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import date, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.core import durations, groups
from services.core.settings import Settings
from services.metrics import parity
from services.router.models import RoutedTicketRow
from services.segmenter.models import CustomerRow

CHUNK = 1000  # ticket ids per query


@dataclass(frozen=True)
class ParityConfig:
    window: timedelta
    attributes: tuple[str, ...]
    policy: parity.Policy

    @classmethod
    def of(cls, settings: Settings, window: timedelta | None = None) -> ParityConfig:
        return cls(window or durations.parse_window(settings.parity_window),
                   tuple(settings.parity_attributes),
                   parity.Policy(threshold=settings.parity_threshold,
                                 minimum_group_size=settings.protected_group_minimum_size))


class TicketBands:
    """ticket id -> its customer's bands, for the tickets whose customer is known (the
    router's ticket state joined to the customer store)."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def __call__(self, ticket_ids: Collection[str], *,
                       today: date) -> dict[str, dict[str, str]]:
        ids = sorted(ticket_ids)
        found: dict[str, dict[str, str]] = {}
        async with self._sessions() as session:
            for start in range(0, len(ids), CHUNK):
                rows = (await session.execute(
                    select(RoutedTicketRow.ticket_id, CustomerRow.birth_date,
                           CustomerRow.gender, CustomerRow.socio_economic_band)
                    .join(CustomerRow, CustomerRow.customer_id == RoutedTicketRow.customer_id)
                    .where(RoutedTicketRow.ticket_id.in_(ids[start:start + CHUNK])))).all()
                for ticket_id, birth_date, gender, band in rows:
                    found[ticket_id] = groups.bands(groups.age_years(birth_date, today),
                                                    gender, band)
        return found

