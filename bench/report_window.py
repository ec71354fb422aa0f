"""The metrics service's reports over a long window: CPU, wall time and the most Python
memory each report takes, for a window of many tickets, beside a bare read of the same
rows in the same run (one statement through the driver, its rows fetched and dropped:
the floor any report over them pays).

    .venv/bin/python -m bench.report_window [--tickets 100000] [--store postgresql]

Writes the timelines of `--tickets` tickets routed over six days (five departments, four
segments; nine in ten answered, eight in ten of those resolved) to a fresh store, then
times each report of the stats API over seven days (`service.all_departments`,
`department_stats`, `segment_stats`) and the periodic service parity
(`service.parity_stats`); the memory in a second call, under tracemalloc.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import text

from devtools.postgres import LocalPostgres
from services.core import db, migrate
from services.metrics import parity, parity_store, service
from services.metrics.store import TimelineStore
from services.metrics.timeline import Assignment, Timeline

DEPARTMENTS = ("public_sector", "customer_care", "premium", "sales", "retail")
SEGMENTS = ("government", "high_value", "prospect", "standard")
WINDOW = timedelta(days=7)
PARITY = parity_store.ParityConfig(WINDOW, ("age_band", "gender", "socio_economic_band"),
                                   parity.Policy())


def timelines(count: int, now: datetime) -> AsyncIterator[list[Timeline]]:
    rng = random.Random(11)

    async def batches() -> AsyncIterator[list[Timeline]]:
        batch = []
        for number in range(count):
            routed = now - timedelta(seconds=rng.uniform(0, 6 * 86400))
            department = rng.choice(DEPARTMENTS)
            answered = routed + timedelta(seconds=rng.uniform(10, 7200)) \
                if rng.random() < 0.9 else None
            resolved = answered + timedelta(seconds=rng.uniform(10, 7200)) \
                if answered and rng.random() < 0.8 else None
            batch.append(Timeline(
                ticket_id=f"T-{number:08d}", department=department,
                segment=rng.choice(SEGMENTS), routing_reason="route",
                received_at=routed - timedelta(seconds=1), segmented_at=routed,
                routed_at=routed, first_response_at=answered, resolved_at=resolved,
                first_response_deadline=routed + timedelta(hours=1),
                assignments=(Assignment("routed", department, routed, "route",
                                        counted=True),),
                observed=frozenset({"routed"})))
            if len(batch) == 5000:
                yield batch
                batch = []
        if batch:
            yield batch

    return batches()


async def measured(call: Callable[[], Awaitable[object]]) -> tuple[float, float, float]:
    """(CPU s, wall s, most Python memory MiB) of the call; the memory in a second call."""
    cpu, wall = time.process_time(), time.perf_counter()
    await call()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    tracemalloc.start()
    try:
        await call()
        most = tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()
    return cpu, wall, most


@asynccontextmanager
async def store_url(kind: str) -> AsyncIterator[str]:
    """A new SQLite file, or a throwaway PostgreSQL server (devtools/postgres.py)."""
    with tempfile.TemporaryDirectory() as folder:
        if kind == "sqlite":
            yield f"sqlite+aiosqlite:///{Path(folder) / 'reports.db'}"
            return
        postgres = LocalPostgres(Path(folder) / "postgres")
        postgres.start()
        try:
            yield postgres.url
        finally:
            postgres.stop()


async def run(count: int, kind: str) -> None:
    async with store_url(kind) as url:
        await migrate.upgrade(url)
        engine = db.engine(url)
        try:
            store = TimelineStore(db.sessions(engine))
            now = datetime.now(UTC)
            async for batch in timelines(count, now):
                async with engine.begin() as connection:
                    await store.save_many(connection, batch)

            async def bare_read() -> None:
                async with engine.connect() as connection:
                    rows = await connection.stream(
                        text("SELECT * FROM ticket_timelines WHERE routed_at >= :since"),
                        {"since": now - WINDOW})
                    async for _page in rows.partitions(1000):
                        pass

            print(f"{count:,} tickets in a {kind} store, reports over 7 days:")
            floor = await measured(bare_read)
            print(f"  {'bare read of the rows':<34} CPU {floor[0]:6.2f} s, wall"
                  f" {floor[1]:6.2f} s, Python memory at most {floor[2]:5.0f} MiB")
            reports: dict[str, Callable[[], Awaitable[object]]] = {
                "every department": lambda: service.all_departments(
                    store, WINDOW, now=now),
                "one department": lambda: service.department_stats(
                    store, DEPARTMENTS[0], WINDOW, now=now),
                "every segment": lambda: service.segment_stats(store, WINDOW, now=now),
                # every 300 s by default; no routed ticket or customer here, so every
                # ticket's customer is looked up and none found
                "service parity": lambda: service.parity_stats(
                    store, parity_store.TicketBands(db.sessions(engine)), PARITY, now=now),
            }
            for name, call in reports.items():
                cpu, wall, most = await measured(call)
                print(f"  {name:<34} CPU {cpu:6.2f} s, wall {wall:6.2f} s, Python memory"
                      f" at most {most:5.0f} MiB; CPU {cpu / floor[0]:.1f} x the bare read")
        finally:
            await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickets", type=int, default=100_000)
    parser.add_argument("--store", choices=("sqlite", "postgresql"), default="sqlite")
    args = parser.parse_args()
    asyncio.run(run(args.tickets, args.store))


if __name__ == "__main__":
    main()
