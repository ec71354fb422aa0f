"""The router service: the intake API, the router stage, and what follows routed
tickets (state and trace, escalation, transfers, live load and overflow)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from fastapi import FastAPI

from services.core import (
    auth,
    background,
    config_changes,
    credentials_api,
    db,
    http,
    kafka,
    leases,
    logs,
    migrate,
    retention,
    topics,
)
from services.core.credentials import Credentials
from services.core.live_config import LiveConfig
from services.core.outage import StoreOutage
from services.core.settings import Settings
from services.core.stage import StageRunner, stage_running
from services.core.transactional_publisher import TransactionalPublisher
from services.router import (
    clock_watch,
    dead_letters_api,
    escalation,
    intake,
    platform_reports,
    priority,
    table_api,
    table_file,
    tickets_api,
    tracker,
    worker,
)
from services.router.load import LoadWatch
from services.router.store import IntakeKeys, RoutedTickets
from services.simulator import api as simulator_api
from services.webhooks import api as webhooks_api
from services.webhooks import service as webhooks

NAME = "router"


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        live_table = app.state.routing_table = LiveConfig(
            "routing_table", settings.routing_table_file, table_file.parse)
        await migrate.upgrade(settings.database_url)
        engine = db.engine(settings.database_url)
        sessions = db.sessions(engine)
        routed = app.state.routed = RoutedTickets(sessions)
        app.state.simulator = simulator_api.Simulator.over(
            engine, minimum_group_size=settings.protected_group_minimum_size)
        intake_keys = app.state.intake_keys = IntakeKeys(sessions)
        fleet = leases.Leases(sessions, holder=leases.holder_id(NAME, settings.instance_id))
        app.state.credentials = Credentials(sessions, cache_seconds=settings.auth_cache_seconds)
        app.state.queue_for = priority.queue_for
        await kafka.ensure_topics(settings, [*topics.PIPELINE, *_queues(live_table)])
        # Transactional: a request answered 503 is never delivered later. The id is stable
        # per instance, so a restarted intake fences its killed predecessor.
        publisher = app.state.publisher = TransactionalPublisher(
            settings, client_id=f"{NAME}-intake", transactional_id=f"intake-{settings.instance_id}",
            producers=settings.intake_producers)
        load = LoadWatch(settings, routed, lambda: live_table.current)
        route = worker.RouteTicket(lambda: live_table.current, routed=routed, load=load.view,
                                   outage=StoreOutage(settings.store_outage_grace_seconds))
        stage = StageRunner(settings, name=NAME, source_topic=topics.SEGMENTED,
                            group_id=topics.ROUTER_GROUP,
                            transform=route)
        follower = StageRunner(
            settings, name=f"{NAME}-tracker", source_topic=topics.EVENTS,
            group_id=topics.ROUTER_TRACKER_GROUP,
            transform=tracker.FollowTicketEvent(routed, current_table=lambda: live_table.current,
                                                awaits_store=route.awaits_store))
        callbacks = webhooks.build(settings, sessions, name=NAME,
                                   platforms_of=routed.platforms_of,
                                   awaits_store=route.awaits_store)
        app.state.webhook_endpoints = callbacks.endpoints
        app.state.webhook_deliveries = callbacks.deliveries

        async def sample_load() -> None:
            await kafka.ensure_topics(settings, _queues(live_table))  # after a reload
            await load.sample()

        async def escalate() -> None:
            table = live_table.current
            await escalation.escalate_due(
                routed, publisher, escalation_target=table.escalation_target,
                queue_for=priority.queue_for, now=datetime.now(UTC))
            await clock_watch.watch_clocks(routed, publisher, table=table,
                                           queue_for=priority.queue_for,
                                           now=datetime.now(UTC))

        async def purge() -> None:
            await retention.purge_past_retention(
                {"routed_tickets": routed, "intake_keys": intake_keys,
                 "webhook_deliveries": callbacks.deliveries},
                retention=retention.of_settings(settings), now=datetime.now(UTC),
                chunk=settings.retention_purge_chunk)

        tasks = app.state.background = background.BackgroundTasks()
        config_publisher = kafka.Publisher(settings, client_id=f"{NAME}-config")
        await config_changes.govern(live_table, settings, sessions, tasks,
                                    publisher=config_publisher, client_id=f"{NAME}-config")
        tasks.start("routing-table-watch", live_table.watch)
        tasks.start("load", lambda stop: background.every(
            settings.load_sample_seconds, sample_load, stop))
        # Once per fleet: only the router holding the job's lease runs it.
        tasks.start("escalation", lambda stop: leases.every_while_holding(
            fleet, escalation.LEASE, settings.escalation_check_seconds, escalate, stop))
        tasks.start("retention-purge", lambda stop: leases.every_while_holding(
            fleet, retention.ROUTER_PURGE, settings.retention_purge_interval_seconds, purge,
            stop))
        tasks.start("deferred-states", lambda stop: background.every(
            1.0, route.flush_deferred, stop, once_more_on_stop=True))
        await follower.start()
        await callbacks.start(tasks, fleet, settings)
        await stage.start()
        app.state.stage = stage
        try:
            yield
        finally:
            await stage.stop()
            await follower.stop()
            await callbacks.stop()
            await tasks.stop()
            await callbacks.close()
            await publisher.close()
            await config_publisher.close()
            await engine.dispose()

    app = FastAPI(
        title="Customer routing: intake and router",
        version="1",
        description="Support platforms post tickets here; departments report on them.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.rate_limits = auth.RateLimits(settings.intake_rate_limit)
    for router in (intake.api, platform_reports.api, tickets_api.api, table_api.api,
                   dead_letters_api.api, credentials_api.api, simulator_api.api,
                   webhooks_api.api):
        app.include_router(router)
    http.install(app, ready=lambda: stage_running(app),
                 down=lambda: background.tasks_down(app))
    return app


def _queues(live_table: table_api.LiveTable) -> list[str]:
    return [topic for department in live_table.current.departments
            for topic in priority.lane_topics(department)]


def main() -> None:
    from services.core import serve

    settings = Settings()
    logs.configure(settings, service=NAME)
    serve.run(create_app(settings), settings, port=settings.router_port)
