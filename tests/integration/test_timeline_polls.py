"""The metrics service's periodic polls (deadline check, backlog) read only the tickets
they are about, through partial indexes, not every timeline kept: SQLite's and
PostgreSQL's plans for the statements the store runs."""

from __future__ import annotations

from datetime import UTC, datetime

from services.core import migrate
from services.metrics.store import TimelineStore
from tests.query_plans import plans


async def test_the_deadline_check_reads_only_undecided_targets(empty_database_url: str,
                                                             ) -> None:
    url = empty_database_url
    await migrate.upgrade(url)
    [plan] = await plans(url, lambda sessions: TimelineStore(sessions).past_deadline(
        datetime.now(UTC)))
    assert "ix_ticket_timelines_undecided_deadline" in plan


async def test_the_backlog_reads_only_open_tickets(empty_database_url: str) -> None:
    url = empty_database_url
    await migrate.upgrade(url)
    for backlog in (False, True):
        for per in ("open_per_department", "open_per_segment"):
            [plan] = await plans(url, lambda sessions, backlog=backlog, per=per: getattr(
                TimelineStore(sessions), per)(backlog=backlog))
            assert "ix_ticket_timelines_open_department" in plan, per
