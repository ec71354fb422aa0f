"""Retention: how long the SQL store keeps ticket states and traces, timelines and
idempotency keys, and the chunked delete each owner's purge uses.

The purge is a periodic job run once per fleet (a lease, see `leases`): each service purges
the tables it writes (the router its ticket states and intake keys, the metrics service
its timelines), in chunks, each chunk its own short transaction, so that a large backlog
never holds long locks."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol, cast

from prometheus_client import Counter
from sqlalchemy import ColumnElement, CursorResult, delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import InstrumentedAttribute

from services.core import db, topics
from services.core.settings import Settings

logger = logging.getLogger(__name__)

PURGED = Counter("routing_retention_purged_rows_total",
                 "Rows deleted from the SQL store past their retention", ["table"])
# Leases of the purges (one per service that owns tables).
ROUTER_PURGE = "retention-purge-router"
METRICS_PURGE = "retention-purge-metrics"
# How long an erasure is remembered (erased_customers: a customer id and a time): as long
# as Kafka can still bring the router a ticket received before it. A dead letter is kept
# the longest, and one replayed on its last day lies on its source topic as long again.
DEAD_LETTERS_KEPT = timedelta(days=topics.RETENTION_DAYS[topics.DEAD_LETTERS])
ERASURES_REMEMBERED = timedelta(days=topics.RETENTION_DAYS[topics.DEAD_LETTERS] + max(
    topics.RETENTION_DAYS[topics.INCOMING], topics.RETENTION_DAYS[topics.SEGMENTED]))


@dataclass(frozen=True)
class Retention:
    """How long each kind of stored data is kept."""

    ticket_states: timedelta  # routed_tickets: state, trace and the ticket's copy
    timelines: timedelta  # ticket_timelines
    idempotency_keys: timedelta  # intake_keys

    @classmethod
    def of_days(cls, *, ticket_states: float, timelines: float,
                idempotency_keys: float) -> Retention:
        return cls(timedelta(days=ticket_states), timedelta(days=timelines),
                   timedelta(days=idempotency_keys))

    def cutoffs(self, now: datetime) -> dict[str, datetime]:
        """Per table: rows last changed before this moment are past retention."""
        return {"routed_tickets": now - self.ticket_states,
                # Callbacks to the platforms, once sent or dead-lettered, as long as the
                # ticket states they are about.
                "webhook_deliveries": now - self.ticket_states,
                "ticket_timelines": now - self.timelines,
                "intake_keys": now - self.idempotency_keys,
                # Not settings: what Kafka keeps decides them. A ticket held as a dead
                # letter is forgotten once that dead letter is gone: none can replay it.
                "erased_customers": now - ERASURES_REMEMBERED,
                "held_tickets": now - DEAD_LETTERS_KEPT}


# What else a chunk's transaction forgets of the keys it deletes, before it locks them.
Along = Callable[[AsyncSession, Sequence[Any]], Awaitable[None]]


async def delete_in_chunks(sessions: async_sessionmaker[AsyncSession],
                           key: InstrumentedAttribute[Any], past: ColumnElement[bool], *,
                           chunk: int, along: Along | None = None) -> int:
    """Delete the rows of `key`'s table where `past` holds, `chunk` rows a transaction;
    returns how many were deleted. A chunk's rows are locked in `key`'s order before
    they are deleted (db.lock_in_key_order), as the other writers of several rows lock
    them (the router's tickets, the metrics' timelines). `along`: what else goes with
    those keys, forgotten in the same transaction before they are locked (as a routing
    forgets a ticket held before it writes the ticket's state)."""
    table = key.class_.__table__
    deleted = 0
    while True:
        gone = 0
        async with sessions() as session, session.begin():
            keys = (await session.scalars(select(key).where(past).limit(chunk))).all()
            if keys:
                if along is not None:
                    await along(session, keys)
                await db.lock_in_key_order(session, key, key.in_(keys))
                # `past` again: a row written anew since the select (a customer
                # erased again) is not past any more.
                purged = await session.execute(delete(key.class_).where(key.in_(keys), past))
                gone = cast(CursorResult[Any], purged).rowcount
        deleted += gone
        PURGED.labels(table.name).inc(gone)
        if len(keys) < chunk:
            return deleted


def of_settings(settings: Settings) -> Retention:
    return Retention.of_days(ticket_states=settings.retention_ticket_states_days,
                             timelines=settings.retention_timelines_days,
                             idempotency_keys=settings.retention_idempotency_keys_days)


class Purgeable(Protocol):
    async def purge(self, before: datetime, *, chunk: int) -> int: ...


async def purge_past_retention(tables: Mapping[str, Purgeable], *, retention: Retention,
                               now: datetime, chunk: int) -> dict[str, int]:
    """Purge each table (by its name) of rows past its retention; rows deleted per table.
    Logs counts only."""
    cutoffs = retention.cutoffs(now)
    deleted = {table: await store.purge(cutoffs[table], chunk=chunk)
               for table, store in tables.items()}
    if any(deleted.values()):
        logger.info("rows past retention deleted", extra={"rows": deleted})
    return deleted
