"""The tier population run's CPU over a large customer base, beside a run that computes
every customer's values twice, in the same process on copies of the same store.

    .venv/bin/python -m bench.population_run [--customers 100000] [--runs 3] [--store FILE]

The store (SQLite, bench/customer_base.py: customers, purchases, value features and
tiers written in bulk; `--store FILE` keeps it for the next run) is copied afresh for each
measured run, and each way runs in turn (`--runs` times, interleaved):
- project: `CustomerStore.recompute_population` as the segmenter runs it (hourly, once
  per fleet): each customer's values from its purchases, the cutoffs, then each tier from
  the values just stored;
- twice: the same run with its last pass computing every customer's values again from
  their purchases, as the run did before; both passes with the store's
  `refresh_features` of today (plain columns and an upsert, not the ORM's entities as
  before), so the ratio is the last pass's alone.
Prints CPU and wall seconds a run (medians), the purchase reads and the tier changes,
which must be the same both ways.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import event

from bench import customer_base
from services.core import db, migrate
from services.segmenter import features
from services.segmenter.cache import CustomerCache
from services.segmenter.store import CustomerStore, TierChange

PAGE = 2000  # the population run's page, as the segmenter runs it


async def twice(store: CustomerStore, now: datetime) -> list[TierChange]:
    """The run with every customer's values computed again in its last pass."""
    async for page in store.customer_id_pages(PAGE):
        await store.refresh_features(page, now=now)
    population = features.PopulationValues(store.policy, now=now)
    async for values in store.stored_values(PAGE):
        population.add(values)
    store.cutoffs = population.cutoffs()
    changes: list[TierChange] = []
    async for page in store.customer_id_pages(PAGE):
        changes.extend(await store.refresh_features(page, now=now))
    return changes


async def project(store: CustomerStore, now: datetime) -> list[TierChange]:
    return await store.recompute_population(now=now, chunk=PAGE)


WAYS: dict[str, Callable[[CustomerStore, datetime], Awaitable[list[TierChange]]]] = {
    "project": project, "twice": twice}


@dataclass(frozen=True)
class Run:
    cpu_seconds: float
    wall_seconds: float
    purchase_reads: int
    changes: frozenset[TierChange]


async def measure(base: Path, way: str, work: Path, now: datetime) -> Run:
    """One run of `way` over a fresh copy of the store at `base`."""
    shutil.copyfile(base, work)
    engine = db.engine(f"sqlite+aiosqlite:///{work}")
    reads = 0

    def counted(_connection: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        nonlocal reads
        reads += "FROM purchases" in statement

    event.listen(engine.sync_engine, "before_cursor_execute", counted)
    store = CustomerStore(db.sessions(engine),
                          cache=CustomerCache(max_customers=1000, ttl_seconds=60))
    try:
        await store.load_cutoffs()
        cpu, wall = time.process_time(), time.monotonic()
        changes = await WAYS[way](store, now)
        cpu, wall = time.process_time() - cpu, time.monotonic() - wall
    finally:
        await engine.dispose()
    return Run(cpu, wall, reads, frozenset(changes))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--store", type=Path, help="the SQLite store, kept (made if absent)")
    args = parser.parse_args()
    if args.customers < 1 or args.runs < 1:
        parser.error("--customers and --runs must be 1 or more")
    with tempfile.TemporaryDirectory(prefix="population-run-") as home:
        base = args.store or Path(home) / "base.db"
        if not base.exists():
            await migrate.upgrade(f"sqlite+aiosqlite:///{base}")
            written = customer_base.write(str(base), args.customers)
            print(f"store: {written['customers']:,} customers, {written['purchases']:,}"
                  f" purchases, {written['buyers']:,} buyers")
        now = datetime.now(UTC)
        runs: dict[str, list[Run]] = {way: [] for way in WAYS}
        for _ in range(args.runs):
            for way in WAYS:
                runs[way].append(await measure(base, way, Path(home) / "work.db", now))
    first = runs["project"][0].changes
    for way, done in runs.items():
        same = "the same" if all(run.changes == first for run in done) else "NOT the same"
        print(f"{way:8s} CPU s {statistics.median(r.cpu_seconds for r in done):6.1f}"
              f"  wall s {statistics.median(r.wall_seconds for r in done):6.1f}"
              f"  purchase reads {done[0].purchase_reads}"
              f"  tier changes {len(first):,} ({same} in every run)")
    ratio = statistics.median(r.cpu_seconds for r in runs["project"]) / statistics.median(
        r.cpu_seconds for r in runs["twice"])
    print(f"project / twice, CPU: {ratio:.2f}")


if __name__ == "__main__":
    asyncio.run(main())
