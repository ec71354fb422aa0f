"""The metrics service's store work per event against its batch size (CPU, so robust on a
shared machine): timelines of 400 tickets (received, segmented, routed) recorded by the
stage's use case (`service.record_events`) on a fresh SQLite store, in batches of each
size.

    .venv/bin/python -m bench.metrics_batches [--batches 2,4,40,150]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from services.core import db, events, migrate
from services.metrics import exporter, service, worker
from services.metrics.store import TimelineStore

TICKETS = 400


def lifecycle(number: int, now: datetime) -> list[events.TicketEvent]:
    ticket_id = f"t-{number}"
    kind = events.TicketEventType
    return [
        events.TicketEvent(ticket_id=ticket_id, type=kind.RECEIVED, occurred_at=now,
                           received_at=now),
        events.TicketEvent(ticket_id=ticket_id, type=kind.SEGMENTED, occurred_at=now,
                           segment="retail"),
        events.TicketEvent(ticket_id=ticket_id, type=kind.ROUTED, occurred_at=now,
                           department="customer_care", segment="retail", reason="route",
                           priority=5, first_response_deadline=now + timedelta(hours=1)),
    ]


async def cpu_per_event(batch: int, folder: Path) -> float:
    url = f"sqlite+aiosqlite:///{folder / f'batch-{batch}.db'}"
    await migrate.upgrade(url)
    engine = db.engine(url)
    try:
        sessions = db.sessions(engine)
        updates = worker.TimelineUpdates(TimelineStore(sessions), sessions)
        now = datetime.now(UTC)
        lifecycle_events = [e for n in range(TICKETS) for e in lifecycle(n, now)]
        began = time.process_time()  # the whole process: aiosqlite's thread included
        for start in range(0, len(lifecycle_events), batch):
            await service.record_events(updates, exporter,
                                        lifecycle_events[start:start + batch])
        return (time.process_time() - began) / len(lifecycle_events)
    finally:
        await engine.dispose()


async def main(batches: list[int]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        for batch in batches:
            seconds = await cpu_per_event(batch, Path(folder))
            print(f"batch of {batch:4d} events: {1e3 * seconds:.3f} ms CPU per event,"
                  f" {3e3 * seconds:.2f} ms per ticket (3 events)", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", default="2,4,40,150")
    args = parser.parse_args()
    asyncio.run(main([int(b) for b in args.batches.split(",") if b]))
