"""The metrics service: timelines from `tickets.events`, `/metrics` and the stats API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from fastapi import FastAPI

from services.core import (
    background,
    broker_start,
    http,
    leases,
    retention,
    service_context,
    start_order,
    topics,
)
from services.core.credentials import Credentials
from services.core.settings import Settings
from services.core.stage import StageRunner
from services.metrics import (
    api,
    bootstrap,
    kafka_watch,
    parity_api,
    service,
    worker,
)

NAME = "metrics"
# How often consumer lag, the backlog and passed deadlines are measured.
POLL_SECONDS = 5.0


def create_app(settings: Settings | None = None, *,
               poll_seconds: float = POLL_SECONDS) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        context = service_context.of(app)
        async with start_order.started() as parts:
            # The store (migrated), the customer bands, the exporter: bootstrap.connect.
            connected = await parts.enter(start_order.Phase.STORE, bootstrap.connect(settings))
            metrics, sessions = connected.metrics, connected.sessions
            context.credentials = Credentials(sessions,
                                              cache_seconds=settings.auth_cache_seconds)
            context.provide(metrics)
            await parts.start(start_order.Phase.PUBLISHERS,
                              lambda: broker_start.topics_ensured(
                                  settings, topics.PIPELINE, what=NAME))
            lag = kafka_watch.LagWatch(settings)
            await parts.start(start_order.Phase.PUBLISHERS, lambda: broker_start.outage_waited_out(
                lag.start, settings, what="metrics consumer lag"), stop=lag.stop)
            check_deadlines = worker.DeadlineCheck(metrics.timelines, metrics.updates,
                                                   export=metrics.exporter)

            async def measure_backlog() -> None:
                await worker.measure_backlog(metrics.timelines, lambda: lag.departments,
                                             export=metrics.exporter)

            fleet = leases.Leases(sessions, holder=leases.holder_id(NAME, settings.instance_id))

            async def purge() -> None:
                await bootstrap.purge_past_retention(settings, sessions, now=datetime.now(UTC))

            async def measure_parity() -> None:
                await service.export_parity(metrics.timelines, metrics.bands,
                                            metrics.exporter, metrics.parity,
                                            now=datetime.now(UTC))

            jobs = context.background = background.BackgroundTasks()
            await parts.start(start_order.Phase.BACKGROUND, stop=jobs.stop)
            jobs.start("consumer-lag",
                       lambda stop: background.every(poll_seconds, lag.poll, stop))
            jobs.start("backlog",
                       lambda stop: background.every(poll_seconds, measure_backlog, stop))
            jobs.start("deadlines",
                       lambda stop: background.every(poll_seconds, check_deadlines, stop))
            # a report over PARITY_WINDOW: in a turn, as those the APIs serve
            jobs.start("service-parity", lambda stop: background.every(
                settings.parity_interval_seconds,
                context.report_turns.periodic("service-parity", measure_parity), stop))
            jobs.start("retention-purge", lambda stop: leases.every_while_holding(
                fleet, retention.METRICS_PURGE, settings.retention_purge_interval_seconds,
                purge, stop))
            # A fresh reader each (re)start: it counts again from the start of the dead
            # letters and of the replay markers (those waiting: kafka_watch.DeadLetterCount).
            jobs.start("dead-letters",
                       lambda stop: kafka_watch.DeadLetterCount(settings).run(stop))
            stage = context.stage = StageRunner(
                settings, name=NAME, source_topic=topics.EVENTS,
                group_id=topics.METRICS_GROUP,
                transform=worker.TrackTicketEvent(metrics.updates, export=metrics.exporter),
                publishes=False, follower=True, on_ended=context.stage_ended)
            await parts.start(start_order.Phase.STAGE, stage.start, stop=stage.stop,
                              finish=stage.finish)
            yield

    app = FastAPI(title="Customer routing: response-time metrics", version="1",
                  lifespan=lifespan, telemetry=http.telemetry_off())
    context = service_context.install(app, settings)
    app.include_router(api.api)
    app.include_router(parity_api.api)
    http.install(app, ready=context.ready, down=context.down, ended=context.ended)
    return app


def main() -> None:
    from services.core import serve

    serve.service(NAME, create_app, port=lambda settings: settings.metrics_port)
