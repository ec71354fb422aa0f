"""The metrics service's context for tests that call its APIs or use cases in process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from services.core import db
from services.core.settings import Settings
from services.metrics import bootstrap, exporter, parity_store, worker
from services.metrics.store import TimelineStore


@asynccontextmanager
async def metrics_context(database_url: str) -> AsyncIterator[bootstrap.Metrics]:
    """The metrics service's context on the real store (what its lifespan provides)."""
    engine = db.engine(database_url)
    sessions = db.sessions(engine)
    store = TimelineStore(sessions)
    try:
        settings = Settings(database_url=database_url)
        yield bootstrap.wire(settings, timelines=store,
                             updates=worker.TimelineUpdates(store, sessions),
                             bands=parity_store.TicketBands(sessions), exporter=exporter,
                             in_table=bootstrap.table_in_force(settings, sessions))
    finally:
        await engine.dispose()
