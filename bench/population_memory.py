"""Peak memory of the tier population run's reads over a large store, now and before.

    .venv/bin/python -m bench.population_memory STORE.db streamed|lists

Over a store made by bench/segmenter_memory.py (`--store`), in a fresh process each, the
two steps of `CustomerStore.recompute_population` whose memory grew with the base: walking
every customer id and deriving the cutoffs from every customer's features.
- streamed: as the store does it now (ids a page at a time, the features streamed into
  `features.PopulationValues`);
- lists: as it did before (every id in one list, every customer's features in another).
Prints the customers, the most valuable tier's cutoff (the same both ways), the peak RSS
(`ru_maxrss`) and the seconds taken.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import time
from datetime import UTC, datetime

from sqlalchemy import select

from services.core import db
from services.segmenter import features
from services.segmenter.cache import CustomerCache
from services.segmenter.models import CustomerFeaturesRow, CustomerRow
from services.segmenter.store import CustomerStore, to_features


async def streamed(store: CustomerStore, now: datetime) -> tuple[int, features.Cutoffs]:
    customers = 0
    async for page in store.customer_id_pages(2000):
        customers += len(page)
    population = features.PopulationValues(store.policy, now=now)
    async for values in store.stored_values(2000):
        population.add(values)
    return customers, population.cutoffs()


async def lists(store: CustomerStore, now: datetime) -> tuple[int, features.Cutoffs]:
    async with store.sessions() as session:
        customer_ids = list((await session.scalars(
            select(CustomerRow.customer_id).order_by(CustomerRow.customer_id))).all())
    async with store.sessions() as session:
        population = [to_features(row) for row in (await session.scalars(
            select(CustomerFeaturesRow))).all()]
    return len(customer_ids), features.population_cutoffs(population, store.policy, now=now)


async def measure(path: str, way: str) -> None:
    engine = db.engine(f"sqlite+aiosqlite:///{path}")
    store = CustomerStore(db.sessions(engine),
                          cache=CustomerCache(max_customers=0, ttl_seconds=1))
    began = time.monotonic()
    try:
        customers, cutoffs = await (streamed if way == "streamed" else lists)(
            store, datetime.now(UTC))
    finally:
        await engine.dispose()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{way}: {customers:,} customers, most valuable from {cutoffs.most_valuable_from},"
          f" peak RSS {peak:.0f} MB, {time.monotonic() - began:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store", help="a SQLite store file")
    parser.add_argument("way", choices=["streamed", "lists"])
    args = parser.parse_args()
    asyncio.run(measure(args.store, args.way))


if __name__ == "__main__":
    main()
