"""One delivery worker's outbox for the tests: a real SQL store (the callbacks written to it
here, no broker), the deliverer on a clock the test moves on, and the figures it exports."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from prometheus_client import REGISTRY
from sqlalchemy.ext.asyncio import AsyncEngine

from services.core import db, migrate
from services.webhooks import catalog, delivery, endpoint_store, models, outbox_store
from tests.conftest import unique
from tests.webhooks_receiver import Receiver


class Clock:
    """The deliverer's clock: the real one, moved on by `ahead`."""

    def __init__(self) -> None:
        self.ahead = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.ahead


@dataclass
class Outbox:
    engine: AsyncEngine
    endpoints: endpoint_store.Endpoints
    deliveries: outbox_store.Deliveries
    deliverer: delivery.Deliverer
    clock: Clock

    async def register(self, platform: str, url: str) -> None:
        """Straight into the store, unchecked: an endpoint registered before the API
        checked what it checks now."""
        assert await self.endpoints.register(platform, url) is not None

    async def enqueue(self, platform: str, *delivery_ids: str) -> None:
        await self.deliveries.enqueue([outbox_store.Outgoing(delivery_id, platform, "ticket.routed",
                                                      "t-1", '{"type":"ticket.routed"}')
                                       for delivery_id in delivery_ids])

    async def drained(self, within: float = 20.0) -> None:
        """A poll, then until its workers have finished (bounded)."""
        await self.deliverer.deliver_due()
        deadline = time.monotonic() + within
        while self.deliverer.working:
            if time.monotonic() > deadline:
                raise AssertionError(f"a worker still sending after {within}s")
            await asyncio.sleep(0.02)

    async def of(self, platform: str) -> dict[str, outbox_store.Delivery]:
        return {d.delivery_id: d for status in (models.PENDING, models.DELIVERED, models.DEAD)
                for d in await self.deliveries.listed(status, platform=platform)}

    async def sent(self, url: str, *delivery_ids: str,
                   ) -> tuple[str, dict[str, outbox_store.Delivery]]:
        """A new platform's callbacks `delivery_ids` to its endpoint `url` (registered
        unchecked), after a poll and its workers: the platform, and its callbacks by id."""
        platform = unique("desk")
        await self.register(platform, url)
        await self.enqueue(platform, *delivery_ids)
        await self.drained()
        return platform, await self.of(platform)

    async def moved_in_flight(self, old: Receiver, new_url: str) -> str:
        """A new platform's callback msg_1 sent to its endpoint `old`, which holds it; the
        endpoint's URL changed to `new_url` while it is in flight there, then `old` answers
        (what it was made to): the platform."""
        platform = unique("desk")
        old.hold()
        await self.register(platform, old.url)
        await self.enqueue(platform, "msg_1")
        await self.deliverer.deliver_due()
        await old.wait_for(1, what=lambda r: r.attempts)  # in flight, held there
        await self.endpoints.update(platform, url=new_url)
        old.release()
        return platform


TWO_MINUTES = catalog.RetryPolicy(max_attempts=3, base_seconds=120, max_seconds=120)


@contextlib.asynccontextmanager
async def outbox_on(database_url: str, *, timeout_seconds: float, concurrency: int = 2,
                    tls: ssl.SSLContext | None = None,
                    retry: catalog.RetryPolicy = TWO_MINUTES) -> AsyncIterator[Outbox]:
    """A failed attempt waits two minutes (so that it is not sent again while a test
    looks), unless `retry` says otherwise; two in flight a platform, unless `concurrency`.
    `tls`: the client context the deliverer trusts receivers with."""
    await migrate.upgrade(database_url)
    engine = db.engine(database_url)
    sessions = db.sessions(engine)
    endpoints = endpoint_store.Endpoints(sessions, secret_overlap=timedelta(hours=1))
    deliveries = outbox_store.Deliveries(sessions)
    clock = Clock()
    deliverer = delivery.Deliverer(
        deliveries, endpoints, retry=retry, timeout_seconds=timeout_seconds,
        concurrency=concurrency, now=clock, tls=tls)
    try:
        yield Outbox(engine, endpoints, deliveries, deliverer, clock)
    finally:
        await deliverer.close()
        await engine.dispose()


def sample(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)
