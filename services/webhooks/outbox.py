"""The outbox writer: lifecycle events in, the callbacks they call for written to SQL.

A pipeline Transform on `tickets.events` that publishes nothing: each batch's callbacks
are written in one transaction (`finish_batch`) before its offsets are committed, so a
crash replays the batch, and the replay writes nothing twice (a callback's id is its
event's). Sending is the delivery workers' business: the pipeline never waits for a
platform.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Sequence
from datetime import datetime

from services.core import envelope, events, faults, kafka
from services.webhooks import catalog, payloads
from services.webhooks.endpoint_store import Endpoints
from services.webhooks.outbox_store import Deliveries, Outgoing

PlatformsOf = Callable[[Collection[str]], Awaitable[dict[str, str]]]


class PlatformNotKnownYet(faults.Transient):
    """A report on a ticket whose routed state waits for the store: retried."""


class RecordCallbacks:
    """Writes to the outbox the callbacks that `catalog.WEBHOOK_EVENTS` lists, for the
    platforms that registered an endpoint before the event was written: an outbox
    catching up, or replaying, sends a platform registered since nothing of what came
    before. A ticket's platform is on its routed event; later events find it in the
    router's state (`platforms_of`). The other events on the topic are passed over
    unread (`reads`)."""

    reads = frozenset(catalog.WEBHOOK_EVENTS)

    def __init__(self, deliveries: Deliveries, endpoints: Endpoints, *,
                 platforms_of: PlatformsOf,
                 awaits_store: Callable[[str], bool] = lambda _ticket_id: False) -> None:
        self._deliveries = deliveries
        self._endpoints = endpoints
        self._platforms_of = platforms_of
        self._awaits_store = awaits_store
        self._registered: dict[str, datetime] = {}
        self._platforms: dict[str, str] = {}
        self._outgoing: list[Outgoing] = []

    async def prefetch(self, batch: Sequence[envelope.Event]) -> None:
        self._outgoing = []
        wanted = {event.ticket_id for event in batch
                  if event.type in self.reads and event.ticket_id}
        self._registered = await self._endpoints.registered_since() if wanted else {}
        self._platforms = await self._platforms_of(wanted) if self._registered else {}

    async def __call__(self, event: envelope.Event) -> list[kafka.Output]:
        if event.type not in self.reads or not self._registered:
            return []
        lifecycle = events.read(event)
        platform = lifecycle.platform or self._platforms.get(lifecycle.ticket_id)
        if platform is None and self._awaits_store(lifecycle.ticket_id):
            raise PlatformNotKnownYet(lifecycle.ticket_id)
        if platform is None:
            return []
        self._platforms[lifecycle.ticket_id] = platform
        registered = self._registered.get(platform)
        # Against when the event was written, not when it happened: a report may say it
        # happened earlier (`occurred_at`), and is still news to a platform registered
        # since.
        published = event.recorded_at or event.time
        if registered is not None and published >= registered:
            self._outgoing.append(Outgoing(
                delivery_id=catalog.delivery_id(event.id), platform=platform,
                event_type=catalog.WEBHOOK_EVENTS[lifecycle.type],
                ticket_id=lifecycle.ticket_id,
                body=payloads.body_of(lifecycle, correlation_id=event.correlation_id)))
        return []

    async def finish_batch(self) -> None:
        outgoing, self._outgoing = self._outgoing, []
        await self._deliveries.enqueue(outgoing)
