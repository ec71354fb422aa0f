"""The retention purges read the rows they delete, not those they keep: SQLite's and
PostgreSQL's plans for the statement each purge runs to find its next chunk (a timeline
never routed goes by when it was received; pending callbacks stay)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.core import migrate
from services.metrics.store import TimelineStore
from services.router.erasures import ErasedCustomers
from services.router.intake_keys import IntakeKeys
from services.router.store import RoutedTickets
from services.webhooks.outbox_store import Deliveries
from tests.query_plans import plans

Sessions = async_sessionmaker[AsyncSession]
BEFORE = datetime(2026, 9, 1, tzinfo=UTC)
# Each purge, and what SQLite's plan searches (every branch of it): the index, then how.
PURGES: dict[str, tuple[Callable[[Sessions], Awaitable[int]], list[str]]] = {
    "routed_tickets": (lambda sessions: RoutedTickets(sessions).purge(BEFORE, chunk=10),
                       ["ix_routed_tickets_updated_at (updated_at<?)"]),
    "intake_keys": (lambda sessions: IntakeKeys(sessions).purge(BEFORE, chunk=10),
                    ["ix_intake_keys_created_at (created_at<?)"]),
    "ticket_timelines": (lambda sessions: TimelineStore(sessions).purge(BEFORE, chunk=10),
                         ["ix_ticket_timelines_routed_received (routed_at<?)",
                          "ix_ticket_timelines_routed_received (routed_at=? AND"
                          " received_at<?)"]),
    "webhook_deliveries": (lambda sessions: Deliveries(sessions).purge(BEFORE, chunk=10),
                           ["ix_webhook_deliveries_status_updated (status=? AND"
                            " updated_at<?)"]),
    "erased_customers": (lambda sessions: ErasedCustomers(sessions).purge(BEFORE, chunk=10),
                         ["ix_erased_customers_erased_at (erased_at<?)"]),
}


@pytest.mark.parametrize("table", sorted(PURGES))
async def test_a_purge_searches_the_rows_it_deletes(empty_database_url: str,
                                                    table: str) -> None:
    await migrate.upgrade(empty_database_url)
    purge, searched = PURGES[table]
    # An empty store: the first chunk's query alone.
    [plan] = await plans(empty_database_url, purge)
    if empty_database_url.startswith("sqlite"):
        assert all(f"INDEX {index}" in plan for index in searched), plan
        assert "SCAN" not in plan, plan
    else:
        assert all(f" {index.split()[0]} " in plan for index in searched), plan
        assert "Seq Scan" not in plan, plan
