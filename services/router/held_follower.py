"""The router's reader of the dead letters (`tickets.dlq`, group `router-held`): it keeps
the tickets they hold (held_tickets) in the store, whichever stage dead-lettered them, so
that asking for one is answered 409 `held`, not as if no such ticket existed. A background
task of the instances that run the router stage: one reader per fleet's share of the
partitions, at least once (a dead letter read twice is held once), its offsets committed
once what it read is written; an outage or a failure restarts it where it committed."""

from __future__ import annotations

import asyncio
import logging

from services.core import faults, kafka, topics
from services.core.settings import Settings
from services.router import held_tickets
from services.router.held_store import HeldTickets

logger = logging.getLogger(__name__)

FETCH_MS = 1000


async def follow(settings: Settings, held: HeldTickets, stop: asyncio.Event, *,
                 client_id: str = "router-held",
                 group_id: str = topics.ROUTER_HELD_GROUP) -> None:
    """Read the dead letters until `stop`, holding the tickets they hold (`group_id`:
    the fleet's; a test's own, on a broker other tests share)."""
    consumer = kafka.consumer(settings, topics.DEAD_LETTERS, group_id=group_id,
                              client_id=client_id)
    await consumer.start()
    try:
        while not stop.is_set():
            fetched = await faults.fetch_past_unreadable(consumer, timeout_ms=FETCH_MS)
            if not fetched:
                continue
            found = [ticket for records in fetched.values() for record in records
                     if (ticket := held_tickets.held_of(record)) is not None]
            await held.hold(found)
            if found:
                logger.info("tickets held as dead letters recorded",
                            extra={"tickets": len(found)})
            await consumer.commit({partition: records[-1].offset + 1
                                   for partition, records in fetched.items() if records})
    finally:
        await consumer.stop()
