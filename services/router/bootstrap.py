"""The router's bootstrap: settings in, a typed context out.

`connect` opens the real adapters (the routed-ticket store and intake keys, migrated
first; the intake's transactional publisher; the routing table in force; the credential
store and the simulator's reader) and `wire` puts them in a `Router`, the one thing the
edges reach: the FastAPI app (provided in its service context,
services/core/service_context.py, reached through `get_router`, or `router_of` in the
intake's routes), the router stage and the escalation timer. Unit tests call `wire` with
recording fakes: the same door, no sockets.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from services.core import (
    config_store,
    credentials_api,
    db,
    retention,
    service_context,
    store_start,
)
from services.core.credentials import Credentials
from services.core.live_config import LiveConfig
from services.core.settings import Settings
from services.core.transactional_publisher import TransactionalPublisher
from services.router import (
    clock_watch,
    dispatch,
    erasures,
    held_store,
    missing_lanes,
    ports,
    priority,
    routing,
    table_file,
)
from services.router.intake_keys import IntakeKeys
from services.router.service import acting_for
from services.router.store import RoutedTickets
from services.simulator.api import Simulator
from services.webhooks import outbox_store

NAME = "router"
LiveTable = LiveConfig[routing.RoutingTable]


@dataclass(frozen=True)
class Router:
    """What the router's use cases are called with."""

    settings: Settings
    routed: ports.Routed
    intake_keys: ports.Keys
    # The intake's: transactional (a 503 is never delivered); refusing what goes to a
    # department whose lanes the router could not make (missing_lanes.Refusing).
    publisher: ports.Publisher
    table: LiveTable
    held: ports.Held  # the tickets held as dead letters
    load: ports.LoadView = ports.no_load  # the departments' load, sampled
    queue_for: dispatch.QueueFor = priority.queue_for

    @property
    def claim_hold(self) -> timedelta:
        """How long a claim stands: an Idempotency-Key's still being published, and a
        hand-over's (ports.claim_hold)."""
        return ports.claim_hold(self.settings)


def live_table(settings: Settings) -> LiveTable:
    """The routing table the settings name, read at once. A file that cannot be used
    (invalid, unreadable, missing) stops the start with file, line and entry only when
    the store holds no version yet (LiveConfig.govern); otherwise it is reported and
    the store's version in force serves."""
    return LiveConfig(config_store.ROUTING_TABLE, settings.routing_table_file, table_file.parse,
                      in_force=clock_watch.export_failed_notices)


def wire(settings: Settings, *, routed: ports.Routed, intake_keys: ports.Keys,
         publisher: ports.Publisher, held: ports.Held, table: LiveTable | None = None,
         load: ports.LoadView = ports.no_load,
         queue_for: dispatch.QueueFor = priority.queue_for,
         lanes: missing_lanes.MissingLanes | None = None) -> Router:
    """The context, from adapters real or fake; the table defaults to the settings'.
    `lanes`: those the router could not make (the router stage's and ensure_lanes'),
    which its use cases hand nothing to."""
    return Router(settings=settings, routed=routed, intake_keys=intake_keys,
                  publisher=missing_lanes.Refusing(
                      publisher, lanes if lanes is not None else missing_lanes.MissingLanes()),
                  table=table if table is not None else live_table(settings), load=load,
                  queue_for=queue_for, held=held)


def known_departments(router: Router) -> credentials_api.KnownDepartments:
    """The departments a credential may name (the routing table in force's) and act for
    (service.acting_for), for the credentials API."""

    async def unknown(department: str) -> str | None:
        return await acting_for.unknown(department, in_table=router.table.current,
                                        routed=router.routed)

    return credentials_api.KnownDepartments(lambda: router.table.current.departments,
                                            unknown)


@dataclass(frozen=True)
class Connected:
    """The context's real adapters, and those the service's lifespan and its other APIs
    need (the stage and the follower need the concrete store; the webhooks the
    sessions)."""

    settings: Settings
    table: LiveTable
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    routed: RoutedTickets
    intake_keys: IntakeKeys
    publisher: TransactionalPublisher
    credentials: Credentials
    simulator: Simulator
    held: held_store.HeldTickets
    # The lanes the router could not make (lane_check finds them), which its stage, its
    # use cases and its simulator hand nothing to.
    lanes: missing_lanes.MissingLanes

    def router(self, load: ports.LoadView = ports.no_load) -> Router:
        """The context over these adapters, with the departments' load as `load` sees it
        and the lanes the router could not make as `lanes` finds them."""
        return wire(self.settings, routed=self.routed, intake_keys=self.intake_keys,
                    publisher=self.publisher, table=self.table, load=load, lanes=self.lanes,
                    held=self.held)


def intake_publisher(settings: Settings) -> TransactionalPublisher:
    """The intake's group commit. Transactional: a request answered 503 is never delivered
    later. The id is stable per instance, so a restarted intake fences its killed
    predecessor."""
    return TransactionalPublisher(settings, client_id=f"{NAME}-intake",
                                  transactional_id=f"intake-{settings.instance_id}",
                                  producers=settings.intake_producers,
                                  gather_seconds=settings.intake_gather_ms / 1000)


@asynccontextmanager
async def connect(settings: Settings) -> AsyncIterator[Connected]:
    """Open the real adapters (migrating the store first); closed on the way out."""
    table = live_table(settings)
    await store_start.migrated(settings.database_url)
    engine = db.store_engine(settings)
    sessions = db.sessions(engine)
    publisher = intake_publisher(settings)
    lanes = missing_lanes.MissingLanes()
    try:
        yield Connected(
            settings, table, engine, sessions, RoutedTickets(sessions), IntakeKeys(sessions),
            publisher,
            Credentials(sessions, cache_seconds=settings.auth_cache_seconds),
            Simulator.over(engine, settings, lambda: lanes.departments),
            held_store.HeldTickets(sessions), lanes)
    finally:
        await publisher.close()
        await engine.dispose()


async def purge_past_retention(settings: Settings,
                               sessions: async_sessionmaker[AsyncSession], *,
                               now: datetime) -> dict[str, int]:
    """The router's retention purge, run once per fleet every
    RETENTION_PURGE_INTERVAL_SECONDS: the tables it writes (the metrics service purges
    the timelines), each cut at its retention; rows deleted per table."""
    return await retention.purge_past_retention(
        {"routed_tickets": RoutedTickets(sessions), "intake_keys": IntakeKeys(sessions),
         "webhook_deliveries": outbox_store.Deliveries(sessions),
         "erased_customers": erasures.ErasedCustomers(sessions),
         "held_tickets": held_store.HeldTickets(sessions)},
        retention=retention.of_settings(settings), now=now,
        chunk=settings.retention_purge_chunk)


def router_of(request: Request) -> Router:
    """The context the lifespan provided (services/router/app.py), read off the request.
    The intake's routes call it themselves: a dependency FastAPI solves, however small,
    costs about 5 us a request."""
    return service_context.of(request.app).part(Router)


async def get_router(request: Request) -> Router:
    """`router_of`, as a dependency (rather than through the `context` dependency: one
    dependency fewer to solve)."""
    return router_of(request)


RouterContext = Annotated[Router, Depends(get_router)]
