"""The metrics stage: each lifecycle event updates its ticket's timeline and the metrics."""

from __future__ import annotations

from services.core import envelope, events, kafka
from services.metrics import exporter, timeline
from services.metrics.store import TimelineStore


class TrackTicketEvent:
    """A pipeline Transform that publishes nothing: its output is the timeline and metrics."""

    def __init__(self, store: TimelineStore, sessions: object) -> None:
        self._store = store
        self._sessions = sessions

    async def __call__(self, event: envelope.Event) -> list[kafka.Output]:
        ticket_event = events.TicketEvent.model_validate(event.data)
        async with self._sessions() as session, session.begin():  # type: ignore[operator]
            current = await self._store.get(session, ticket_event.ticket_id)
            updated, observations = timeline.apply(current, ticket_event)
            if updated != current:
                await self._store.save(session, updated)
        # Observed after the commit: a replay finds them already in `observed`.
        exporter.record(observations)
        return []
