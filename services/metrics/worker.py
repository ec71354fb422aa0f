"""The metrics stage: each lifecycle event updates its ticket's timeline and the metrics;
periodic jobs decide targets whose deadline passed and measure the backlog. The use
cases are in service.py; these only translate and call them."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from services.core import envelope, events, kafka
from services.metrics import exporter, service, timeline
from services.metrics.store import TimelineStore


class TimelineUpdates:
    """Read, change and write timelines (service.Updates, against the store).

    One at a time within the service, so the stage and the deadline check never write
    over each other's change (with_for_update does the same across processes where the
    database supports it)."""

    def __init__(self, store: TimelineStore, sessions: async_sessionmaker[AsyncSession],
                 lock: asyncio.Lock | None = None) -> None:
        self._store = store
        self._engine: AsyncEngine = sessions.kw["bind"]
        self._lock = lock or asyncio.Lock()

    async def update_all(self, changes: Sequence[tuple[str, service.Change]]
                         ) -> list[timeline.Observation]:
        """Apply the changes in order, each to its ticket's timeline, in one transaction
        (one read and one write per ticket, however many changes it has).

        On a connection of the sessions' engine rather than in an ORM session: the
        statements are Core ones, and a session's bookkeeping cost more than they did."""
        async with self._lock, self._engine.begin() as connection:
            read = await self._store.get_many(connection, {ticket for ticket, _ in changes})
            current = dict(read)
            observations: list[timeline.Observation] = []
            for ticket_id, change in changes:
                current[ticket_id], seen = change(current[ticket_id])
                observations += seen
            await self._store.save_many(connection, [
                updated for ticket_id, updated in current.items()
                if updated != read[ticket_id]])
        return observations


class TrackTicketEvent:
    """A pipeline Transform that publishes nothing: its output is the timelines and the
    metrics (service.record_events). A batch's events are kept as they are read, then
    recorded at once."""

    def __init__(self, updates: service.Updates, *,
                 export: service.Exporter = exporter) -> None:
        self._updates = updates
        self._export = export
        self._batch: list[events.TicketEvent] = []

    async def prefetch(self, _events: Sequence[envelope.Event]) -> None:
        self._batch = []  # what a failed attempt at a batch left

    async def __call__(self, event: envelope.Event) -> list[kafka.Output]:
        self._batch.append(events.read(event))
        return []

    async def finish_batch(self) -> None:
        batch, self._batch = self._batch, []
        await service.record_events(self._updates, self._export, batch)


class DeadlineCheck:
    """The periodic job deciding targets whose deadline passed (service.check_deadlines)."""

    def __init__(self, timelines: service.Timelines, updates: service.Updates, *,
                 grace: timedelta = service.REPORTING_GRACE,
                 export: service.Exporter = exporter) -> None:
        self._timelines = timelines
        self._updates = updates
        self._grace = grace
        self._export = export

    async def __call__(self, now: datetime | None = None) -> int:
        return await service.check_deadlines(self._timelines, self._updates, self._export,
                                             now=now or datetime.now(UTC), grace=self._grace)


async def measure_backlog(timelines: service.Timelines, departments: Callable[[], set[str]],
                          *, export: service.Exporter = exporter) -> None:
    """routing_open_tickets and routing_backlog_tickets from the timelines
    (service.measure_backlog)."""
    await service.measure_backlog(timelines, export, departments=departments())
