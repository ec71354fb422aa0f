"""Events about customers on `customers.events`: changes (so every segmenter instance
drops its cached copy) and tier changes (so anyone can follow differentiation)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Protocol

from prometheus_client import Counter

from services.core import broker_start, envelope, events, faults, kafka, topics
from services.core.settings import Settings
from services.segmenter.store import CustomerStore, TierChange

logger = logging.getLogger(__name__)
SOURCE = events.SEGMENTER_SOURCE

CHANGED = "customer.changed"
TIER_CHANGED = "customer.tier_changed"
POPULATION_RECOMPUTED = "customers.recomputed"

UNPUBLISHED = Counter("routing_customer_events_unpublished_total",
                      "Customer events the broker did not acknowledge", ["type"])
PASSED_OVER = Counter("routing_customer_events_passed_over_total",
                      "Records on customers.events a segmenter's cache follower could not"
                      " read or act on, and passed over", ["fault"])
TIER_CHANGES = Counter("routing_customer_tier_changes_total", "Changes of customers' tier",
                       ["previous", "current"])


def export_passed_over() -> None:
    """Each fault a passed-over record can have, at 0, from the segmenter's start: a
    series born at its first record passed over, at 1, is no increase to Prometheus, and
    RoutingCustomerEventsPassedOver would miss it."""
    for fault in faults.Fault:
        PASSED_OVER.labels(fault.value)


class Publisher(Protocol):
    """What publishes customer events: kafka.Publisher, or a recording fake in tests."""

    async def publish(self, outputs: Sequence[kafka.Publishable]) -> None: ...


def _event(kind: str, customer_id: str, data: dict[str, object]) -> kafka.Output:
    return kafka.Output(topics.CUSTOMER_EVENTS, customer_id, envelope.Event(
        type=kind, source=SOURCE, ticket_id=None, subject=customer_id,
        correlation_id=customer_id, data={"customer_id": customer_id, **data}))


async def publish_changes(publisher: Publisher, changed: Iterable[str],
                          tier_changes: Iterable[TierChange] = ()) -> None:
    at = datetime.now(UTC).isoformat()
    outputs = [_event(CHANGED, customer_id, {"at": at}) for customer_id in changed]
    for change in tier_changes:
        TIER_CHANGES.labels(change.previous, change.current).inc()
        outputs.append(_event(TIER_CHANGED, change.customer_id, {
            "previous": str(change.previous), "current": str(change.current), "at": at}))
    await _publish(publisher, outputs)


async def publish_recomputed(publisher: Publisher,
                             tier_changes: Iterable[TierChange]) -> None:
    await publish_changes(publisher, (), tier_changes)
    await _publish(publisher, [_event(POPULATION_RECOMPUTED, "*", {
        "at": datetime.now(UTC).isoformat()})])


async def _publish(publisher: Publisher, outputs: list[kafka.Output]) -> None:
    for start in range(0, len(outputs), 1000):
        chunk = outputs[start:start + 1000]
        try:
            await publisher.publish(chunk)
        except kafka.PublishFailed:
            # The store is already changed; caches expire on their own (TTL).
            for output in chunk:
                UNPUBLISHED.labels(output.event.type).inc()
            logger.warning("customer events not published", extra={"count": len(chunk)})


class CacheFollower:
    """Follows `customers.events` from the moment it starts (no consumer group: every
    instance sees every event) and keeps this instance's cache and cutoffs fresh."""

    def __init__(self, settings: Settings, store: CustomerStore) -> None:
        # Only what changes from now on matters to a cache that starts empty.
        self._consumer = kafka.consumer(settings, topics.CUSTOMER_EVENTS, group_id=None,
                                        client_id="segmenter-cache", offset_reset="latest")
        self._store = store

    async def run(self, stop: asyncio.Event) -> None:
        await self.start()
        await self.follow(stop)

    @classmethod
    async def positioned(cls, settings: Settings, store: CustomerStore) -> CacheFollower:
        """One started (`start`), the broker's outage waited out as the other parts a
        service's lifespan starts wait for it (broker_start.outage_waited_out): a fresh
        one each try, a Kafka consumer stopped not being started again."""
        async def started() -> CacheFollower:
            follower = cls(settings, store)
            await follower.start()
            return follower

        return await broker_start.outage_waited_out(
            started, settings, what="segmenter cache follower")

    async def start(self) -> None:
        """Start reading at the end of the topic as it is now: every event written once
        it returns is read (the end fixed now, not at the first fetch). A start that
        fails or is cancelled stops the consumer, so no client is left open."""
        try:
            await self._consumer.start()
            await kafka.positioned(self._consumer)
        except BaseException:
            await self._consumer.stop()
            raise

    async def follow(self, stop: asyncio.Event) -> None:
        """Apply each event read (once started), until `stop`."""
        try:
            while not stop.is_set():
                batch = await faults.fetch_past_unreadable(self._consumer, timeout_ms=200)
                for records in batch.values():
                    for record in records:
                        await self._apply(record)
        finally:
            await self._consumer.stop()

    async def _apply(self, record: object) -> None:
        """Forget what the event says changed; an event it cannot read or act on is
        passed over (caches also expire on their own), never the end of the follower."""
        try:
            event = envelope.from_record(record.headers, record.value)  # type: ignore[attr-defined]
            if event.type == POPULATION_RECOMPUTED:
                self._store.cache.clear()
                await self._store.load_cutoffs()
            elif event.subject:
                self._store.cache.forget(event.subject)
        except Exception as error:
            fault = faults.classify(error).value
            PASSED_OVER.labels(fault).inc()
            logger.warning("customer event passed over", extra={
                "fault": fault, "error": faults.reason(error),
                "offset": getattr(record, "offset", None)})
