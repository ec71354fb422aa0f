"""The metrics stage: each lifecycle event updates its ticket's timeline and the metrics;
periodic jobs decide targets whose deadline passed and measure the backlog."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.core import envelope, events, kafka
from services.metrics import clock_events, exporter, timeline
from services.metrics.store import TimelineStore

logger = logging.getLogger(__name__)

Change = Callable[[timeline.Timeline], tuple[timeline.Timeline, list[timeline.Observation]]]
# Responses may reach us a little after they happened (a department's report in flight,
# this service catching up): a deadline counts as passed unanswered only this much later.
REPORTING_GRACE = timedelta(seconds=15)


class TimelineUpdates:
    """Read, change and write one timeline; record its observations once committed.

    One at a time within the service, so the stage and the deadline check never write
    over each other's change (with_for_update does the same across processes where the
    database supports it)."""

    def __init__(self, store: TimelineStore, sessions: async_sessionmaker[AsyncSession],
                 lock: asyncio.Lock | None = None) -> None:
        self._store = store
        self._sessions = sessions
        self._lock = lock or asyncio.Lock()

    async def update(self, ticket_id: str, change: Change) -> list[timeline.Observation]:
        return await self.update_all([(ticket_id, change)])

    async def update_all(self, changes: Sequence[tuple[str, Change]]
                         ) -> list[timeline.Observation]:
        """Apply the changes in order, each to its ticket's timeline, in one transaction
        (one read and one write per ticket, however many changes it has)."""
        async with self._lock:
            async with self._sessions() as session, session.begin():
                read = await self._store.get_many(session, {ticket for ticket, _ in changes})
                current = dict(read)
                observations: list[timeline.Observation] = []
                for ticket_id, change in changes:
                    current[ticket_id], seen = change(current[ticket_id])
                    observations += seen
                await self._store.save_many(session, [
                    updated for ticket_id, updated in current.items()
                    if updated != read[ticket_id]])
            # Observed after the commit: a replay finds them already in the timeline.
            exporter.record(observations)
        return observations


class TrackTicketEvent:
    """A pipeline Transform that publishes nothing: its output is the timelines and the
    metrics. A batch's events are kept as they are read, then applied at once."""

    def __init__(self, updates: TimelineUpdates) -> None:
        self._updates = updates
        self._batch: list[events.TicketEvent] = []

    async def prefetch(self, _events: Sequence[envelope.Event]) -> None:
        self._batch = []  # what a failed attempt at a batch left

    async def __call__(self, event: envelope.Event) -> list[kafka.Output]:
        self._batch.append(events.read(event))
        return []

    async def finish_batch(self) -> None:
        batch, self._batch = self._batch, []
        await self._updates.update_all([
            (ticket_event.ticket_id, functools.partial(_applied, ticket_event))
            for ticket_event in batch])


def _applied(ticket_event: events.TicketEvent, current: timeline.Timeline
             ) -> tuple[timeline.Timeline, list[timeline.Observation]]:
    updated, observations = timeline.apply(current, ticket_event)
    updated, clock_observations = clock_events.apply(updated, ticket_event)
    return updated, [*observations, *clock_observations]


class DeadlineCheck:
    """Decides the targets of tickets whose deadline passed without a response."""

    def __init__(self, store: TimelineStore, updates: TimelineUpdates, *,
                 grace: timedelta = REPORTING_GRACE) -> None:
        self._store = store
        self._updates = updates
        self._grace = grace

    async def __call__(self, now: datetime | None = None) -> int:
        as_of = (now or datetime.now(UTC)) - self._grace
        missed = 0
        for ticket_id in await self._store.past_deadline(as_of):
            observations = await self._updates.update(
                ticket_id, lambda current: timeline.check_deadline(current, as_of))
            missed += sum(1 for o in observations if isinstance(o, timeline.TargetDecided))
        if missed:
            logger.info("first-response deadlines passed unanswered", extra={"tickets": missed})
        return missed


async def measure_backlog(store: TimelineStore, departments: Callable[[], set[str]]) -> None:
    """routing_open_tickets from the timelines; known departments with none show 0."""
    open_now = await store.open_per_department()
    known = departments() | set(open_now) | {d for (d,) in exporter.OPEN_TICKETS.values()}
    exporter.OPEN_TICKETS.replace({(d,): float(open_now.get(d, 0)) for d in known})
