"""The segmenter service: the segmenter stage, the customer store and its APIs."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from fastapi import FastAPI

from services.core import (
    background,
    broker_start,
    config_changes,
    http,
    leases,
    service_context,
    start_order,
    topics,
)
from services.core.credentials import Credentials
from services.core.outage import StoreOutage
from services.core.settings import Settings
from services.core.stage import StageRunner
from services.segmenter import (
    admin_api,
    api,
    bootstrap,
    customer_events,
    rules_api,
    service,
    worker,
)
from services.segmenter.store import CustomerStore

NAME = "segmenter"
TIER_RECOMPUTE_LEASE = "tier-recompute"


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        context = service_context.of(app)
        async with start_order.started() as parts:
            # The store (migrated), then its publisher: bootstrap.connect opens both.
            connected = await parts.enter(
                start_order.Phase.STORE, bootstrap.connect(settings, client_id=f"{NAME}-admin"))
            segmenter = connected.segmenter
            store, sessions, publisher = connected.store, connected.sessions, connected.publisher
            context.provide(segmenter)
            context.credentials = Credentials(sessions,
                                              cache_seconds=settings.auth_cache_seconds)
            await parts.start(start_order.Phase.PUBLISHERS,
                              lambda: broker_start.topics_ensured(
                                  settings, topics.PIPELINE, what=NAME))
            segment = worker.SegmentTicket(
                lookup=store.customer, preload=store.preload, cached=store.cached_customer,
                outage=StoreOutage(settings.store_outage_grace_seconds),
                current_rules=lambda: segmenter.rules.current)
            # The runs an import set off stop before the publisher and the store they use.
            await parts.start(start_order.Phase.BACKGROUND, stop=context.report_turns.stop)
            tasks = context.background = background.BackgroundTasks()
            await parts.start(start_order.Phase.BACKGROUND, stop=tasks.stop)
            await config_changes.govern(segmenter.rules, settings, sessions, tasks,
                                        publisher=publisher, client_id=f"{NAME}-config")
            tasks.start("rules-watch", segmenter.rules.watch)
            # Positioned before the stage starts: every change from then on drops its
            # customer's cached copy, none made while the stage runs is missed. A fresh
            # follower at each restart: a stopped Kafka consumer is not started again.
            first = [await customer_events.CacheFollower.positioned(settings, store)]

            async def follow_customers(stop: asyncio.Event) -> None:
                if first:
                    await first.pop().follow(stop)
                else:
                    await customer_events.CacheFollower(settings, store).run(stop)

            tasks.start("cache-follower", follow_customers)
            tasks.start("tickets-raised", lambda stop: background.every(
                settings.tickets_raised_flush_seconds, lambda: _flush(segment.tally, store),
                stop, once_more_on_stop=True))
            if settings.tier_recompute_interval_seconds:
                # Once per fleet: only the segmenter holding the lease recomputes.
                fleet = leases.Leases(sessions,
                                      holder=leases.holder_id(NAME, settings.instance_id))
                tasks.start("tier-recompute", lambda stop: leases.every_while_holding(
                    fleet, TIER_RECOMPUTE_LEASE, settings.tier_recompute_interval_seconds,
                    # a pass over the whole customer base: in a turn, as the API's
                    context.report_turns.periodic("tier-recompute",
                                                  lambda: _recompute(segmenter)), stop))
            stage = context.stage = StageRunner(
                settings, name=NAME, source_topic=topics.INCOMING,
                group_id=topics.SEGMENTER_GROUP, transform=segment,
                on_ended=context.stage_ended)
            await parts.start(start_order.Phase.STAGE, stage.start, stop=stage.stop,
                              finish=stage.finish)
            yield

    app = FastAPI(title="Customer routing: segmenter", version="1", lifespan=lifespan,
                  telemetry=http.telemetry_off())
    context = service_context.install(app, settings)
    for router in (api.api, admin_api.api, rules_api.api):
        app.include_router(router)
    http.install(app, ready=context.ready, down=context.down, ended=context.ended,
                 # The bulk imports stream their bodies, read after authentication.
                 streamed_uploads={("POST", "/v1/customers/import"),
                                   ("POST", "/v1/purchases/import")})
    return app


async def _flush(tally: Counter[str], store: CustomerStore) -> None:
    counts = dict(tally)
    tally.clear()
    try:
        await store.count_tickets(counts, now=datetime.now(UTC))
    except Exception:
        tally.update(counts)  # the database is away: keep the counts for the next flush
        raise


async def _recompute(segmenter: bootstrap.Segmenter) -> None:
    await service.recompute_tiers(segmenter.customers, segmenter.publisher,
                                  now=datetime.now(UTC))


def main() -> None:
    from services.core import serve

    serve.service(NAME, create_app, port=lambda settings: settings.segmenter_port)
