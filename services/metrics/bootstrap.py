"""The metrics service's bootstrap: settings in, a typed context out.

`connect` opens the real adapters (the timeline store, migrated first; the customer
bands behind service parity; the Prometheus exporter with the routing table's bucket
edges; the routing table's departments, which the stats API knows) and `wire` puts them
in a `Metrics`, what the edges call the use cases (services/metrics/service.py) with:
the Kafka stage and the periodic jobs (worker.py), the stats and parity APIs. Unit tests
call `wire` with recording fakes: the same door, no sockets.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from fastapi import Depends
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.core import db, retention, service_context, store_start
from services.core.settings import Settings
from services.metrics import (
    exporter,
    parity_store,
    service,
    table_departments,
    targets_file,
    worker,
)
from services.metrics.store import TimelineStore


@dataclass(frozen=True)
class Metrics:
    """What the metrics use cases are called with."""

    settings: Settings
    timelines: service.Timelines
    updates: service.Updates
    bands: service.CustomerBands
    exporter: service.Exporter
    in_table: service.TableDepartments  # the departments of the routing table in force
    parity: parity_store.ParityConfig  # the periodic measurement's (PARITY_* settings)


def wire(settings: Settings, *, timelines: service.Timelines, updates: service.Updates,
         bands: service.CustomerBands, exporter: service.Exporter,
         in_table: service.TableDepartments) -> Metrics:
    """The context, from adapters real or fake."""
    return Metrics(settings=settings, timelines=timelines, updates=updates, bands=bands,
                   exporter=exporter, in_table=in_table,
                   parity=parity_store.ParityConfig.of(settings))


def table_in_force(settings: Settings, sessions: async_sessionmaker[AsyncSession]
                   ) -> table_departments.TableDepartments:
    """The departments of the routing table in force, as the real service reads them."""
    return table_departments.TableDepartments(sessions, settings.routing_table_file)


@dataclass(frozen=True)
class Connected:
    """The context and the real adapters behind it, for the service's own lifespan
    (credentials and retention need the sessions and the concrete store)."""

    metrics: Metrics
    store: TimelineStore
    sessions: async_sessionmaker[AsyncSession]


@asynccontextmanager
async def connect(settings: Settings) -> AsyncIterator[Connected]:
    """Open the real adapters (migrating the store first); closed on the way out."""
    await store_start.migrated(settings.database_url)
    engine = db.store_engine(settings)
    try:
        sessions = db.sessions(engine)
        # The response-time buckets follow the targets of the routing table in force (an
        # upload through the router's API included): set before anything is observed.
        exporter.use_response_buckets(await targets_file.response_buckets(
            sessions, settings.routing_table_file))
        store = TimelineStore(sessions)
        yield Connected(wire(settings, timelines=store,
                             updates=worker.TimelineUpdates(store, sessions),
                             bands=parity_store.TicketBands(sessions), exporter=exporter,
                             in_table=table_in_force(settings, sessions)),
                        store, sessions)
    finally:
        await engine.dispose()


async def purge_past_retention(settings: Settings,
                               sessions: async_sessionmaker[AsyncSession], *,
                               now: datetime) -> dict[str, int]:
    """The metrics service's retention purge, run once per fleet every
    RETENTION_PURGE_INTERVAL_SECONDS: the timelines it writes (the router purges the
    rest), cut at their retention; rows deleted per table."""
    return await retention.purge_past_retention(
        {"ticket_timelines": TimelineStore(sessions)},
        retention=retention.of_settings(settings), now=now,
        chunk=settings.retention_purge_chunk)


async def get_metrics(context: service_context.Context) -> Metrics:
    """The context the lifespan provided (services/metrics/app.py)."""
    return context.part(Metrics)


MetricsContext = Annotated[Metrics, Depends(get_metrics)]
