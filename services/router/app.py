"""The router service: the intake API, the router stage, and what follows routed
tickets (state and trace, escalation, transfers, live load and overflow)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from fastapi import FastAPI

from services.core import (
    admin_actions,
    admin_actions_api,
    background,
    broker_start,
    config_changes,
    credentials_api,
    http,
    kafka,
    leases,
    retention,
    service_context,
    start_order,
    topics,
)
from services.core.outage import StoreOutage
from services.core.settings import Settings
from services.core.stage import StageRunner
from services.router import (
    bootstrap,
    dead_letters_api,
    escalation,
    event_follower,
    held_follower,
    intake,
    lane_check,
    platform_reports,
    service,
    table_api,
    tickets_api,
    worker,
)
from services.router.load import LoadWatch
from services.simulator import api as simulator_api
from services.webhooks import api as webhooks_api
from services.webhooks import callbacks_api
from services.webhooks import service as webhooks

Phase = start_order.Phase
logger = logging.getLogger(__name__)
NAME = bootstrap.NAME


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        context = service_context.of(app)
        async with start_order.started() as parts:
            # The store (migrated), then the intake's publisher: bootstrap.connect.
            connected = await parts.enter(Phase.STORE, bootstrap.connect(settings))
            live_table, routed, sessions = connected.table, connected.routed, connected.sessions
            context.credentials = connected.credentials
            fleet = leases.Leases(sessions, holder=leases.holder_id(NAME, settings.instance_id))
            await parts.start(Phase.PUBLISHERS,
                              lambda: broker_start.topics_ensured(
                                  settings, topics.PIPELINE, what=NAME))
            config_publisher = kafka.Publisher(settings, client_id=f"{NAME}-config")
            await parts.start(Phase.PUBLISHERS, stop=config_publisher.close)
            load = LoadWatch(settings, routed, lambda: live_table.current)
            lanes = connected.lanes
            router = connected.router(load=load.view)
            route = worker.RouteTicket(lambda: live_table.current, routed=routed,
                                       load=router.load,
                                       outage=StoreOutage(settings.store_outage_grace_seconds),
                                       lanes=lanes)
            callbacks = webhooks.build(settings, sessions,
                                       platforms_of=routed.platforms_of,
                                       awaits_store=route.awaits_store,
                                       on_ended=context.stage_ended)
            await parts.start(Phase.PUBLISHERS, stop=callbacks.close)
            context.provide(router, connected.simulator, callbacks.endpoints,
                            callbacks.deliveries, bootstrap.known_departments(router),
                            admin_actions.AdminActions(sessions))

            async def escalate() -> None:
                await service.escalate_due(router.routed, router.publisher,
                                           table=live_table.current,
                                           queue_for=router.queue_for, now=datetime.now(UTC),
                                           claim_for=router.claim_hold)

            async def purge() -> None:
                await bootstrap.purge_past_retention(settings, sessions, now=datetime.now(UTC))

            tasks = context.background = background.BackgroundTasks()
            await parts.start(Phase.BACKGROUND, stop=tasks.stop)
            lanes_checked = lane_check.LaneCheck(settings, live_table, lanes)
            await config_changes.govern(live_table, settings, sessions, tasks,
                                        publisher=config_publisher, client_id=f"{NAME}-config")
            # The departments' queues of the table in force: the store's, which may differ
            # from the file's (or serve in place of a file that cannot be used); checked
            # again every load sample interval and after each table put in force, by every
            # instance (one serving the intake alone hands tickets over too).
            await broker_start.outage_waited_out(lanes_checked.check, settings,
                                                 what=f"{NAME} lanes check")
            tasks.start("lanes", lanes_checked.run)
            tasks.start("routing-table-watch", live_table.watch)
            # Once per fleet: only the router holding the job's lease runs it.
            tasks.start("escalation", lambda stop: leases.every_while_holding(
                fleet, escalation.LEASE, settings.escalation_check_seconds, escalate, stop))
            tasks.start("retention-purge", lambda stop: leases.every_while_holding(
                fleet, retention.ROUTER_PURGE, settings.retention_purge_interval_seconds,
                purge, stop))
            if settings.router_stage:
                # The load that overflow routes by, sampled where tickets are routed: an
                # instance serving the intake alone neither reads it nor reports it.
                tasks.start("load", lambda stop: background.every(
                    settings.load_sample_seconds, load.sample, stop))
                # The consumers: the ticket events' follower and the webhooks' recorder
                # (which starts their delivery), then the stage. An instance without
                # them serves the intake and the APIs only, and writes little to the store.
                tasks.start("deferred-states", lambda stop: background.every(
                    1.0, route.flush_deferred, stop, once_more_on_stop=True))
                # The tickets the stages dead-letter, held until a replay routes them.
                held_follower.start(tasks, "held-tickets", settings, connected.held,
                                    client_id=f"{NAME}-held")
                follower = StageRunner(
                    settings, name=f"{NAME}-tracker", source_topic=topics.EVENTS,
                    group_id=topics.ROUTER_TRACKER_GROUP, follower=True,
                    on_ended=context.stage_ended,
                    transform=event_follower.FollowTicketEvent(
                        routed, current_table=lambda: live_table.current,
                        awaits_store=route.awaits_store))
                context.followers = [follower, callbacks.recorder]
                await parts.start(Phase.FOLLOWERS, follower.start, stop=follower.stop,
                                  finish=follower.finish)
                await parts.start(Phase.FOLLOWERS,
                                  lambda: callbacks.start(tasks, fleet, settings),
                                  stop=callbacks.stop, finish=callbacks.recorder.finish)
                stage = context.stage = StageRunner(
                    settings, name=NAME, source_topic=topics.SEGMENTED,
                    group_id=topics.ROUTER_GROUP, transform=route,
                    on_ended=context.stage_ended)
                await parts.start(Phase.STAGE, stage.start, stop=stage.stop, finish=stage.finish)
            else:
                # The webhooks' recorder, built with its Kafka clients but not run here:
                # its clients closed at the stop all the same.
                await parts.start(Phase.FOLLOWERS, stop=callbacks.stop)
                context.started_without_stage = True
            yield

    app = FastAPI(
        title="Customer routing: intake and router",
        version="1",
        description="Support platforms post tickets here; departments report on them.",
        lifespan=lifespan,
        telemetry=http.telemetry_off(),
    )
    context = service_context.install(app, settings)
    for router in (intake.api, platform_reports.api, tickets_api.api, table_api.api,
                   dead_letters_api.api, credentials_api.api, simulator_api.api,
                   webhooks_api.api, admin_actions_api.api):
        app.include_router(router)
    app.webhooks.include_router(callbacks_api.callbacks)  # what the router sends, documented
    http.install(app, ready=context.ready, down=context.down, ended=context.ended)
    return app


def main() -> None:
    from services.core import serve

    serve.service(NAME, create_app, port=lambda settings: settings.router_port,
                  shared_port=lambda settings: settings.intake_shared_port)
