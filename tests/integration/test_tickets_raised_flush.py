"""The segmenter's flush of tickets raised, on the real store (SQLite and PostgreSQL):
each customer's count grows by what was tallied, in one statement for the whole flush
(a round trip per customer held the store's write lock, which every service's writes
wait for, for seconds after a busy spell). A known customer without features yet (no
purchase, no population run) is counted too; an unknown one has nothing to count on."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from services.core import db
from services.segmenter.cache import CustomerCache
from services.segmenter.models import CustomerFeaturesRow
from services.segmenter.profiles import Tier
from services.segmenter.store import CustomerStore

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
CUSTOMERS = [f"c-{n:02d}" for n in range(40)]


async def test_a_flush_adds_each_customers_count_in_one_statement(database_url: str) -> None:
    engine = db.engine(database_url)
    try:
        await flush_and_read(engine, db.sessions(engine))
    finally:
        await engine.dispose()


async def flush_and_read(engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]
                         ) -> None:
    store = CustomerStore(sessions, cache=CustomerCache(max_customers=10, ttl_seconds=60))
    for customer_id in CUSTOMERS:
        await store.save_customer({"customer_id": customer_id,
                                   "customer_type": "individual"})
        await store.record_purchase(customer_id, 100.0, "EUR", NOW, now=NOW)
    await store.save_customer({"customer_id": "c-no-purchase", "customer_type": "individual"})
    statements: list[tuple[bool, list[str]]] = []

    def executed(_conn: Any, _cursor: Any, statement: str, parameters: Any,
                 _context: Any, executemany: bool) -> None:
        if statement.lstrip().upper().startswith(("UPDATE", "INSERT")):
            rows = parameters if executemany else [parameters]
            statements.append((executemany, [_counted_customer(row) for row in rows]))

    event.listen(engine.sync_engine, "before_cursor_execute", executed)
    try:
        await store.count_tickets({customer_id: n % 3 + 1
                                   for n, customer_id in enumerate(CUSTOMERS)}
                                  | {"c-no-purchase": 2, "c-unknown": 5}, now=NOW)
        await store.count_tickets({CUSTOMERS[0]: 10}, now=NOW)
        await store.count_tickets({"c-no-purchase": 1}, now=NOW)
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", executed)

    async with sessions() as session:
        raised = {customer_id: count for customer_id, count in await session.execute(select(
            CustomerFeaturesRow.customer_id, CustomerFeaturesRow.tickets_raised))}
    # Counted for every known customer; an unknown one has nothing to add to.
    assert raised == {customer_id: n % 3 + 1 + (10 if n == 0 else 0)
                      for n, customer_id in enumerate(CUSTOMERS)} | {"c-no-purchase": 3}
    # One statement a flush: run for each customer by the driver (the others have one),
    # in the customers' order, as a refresh of their values takes its row locks.
    assert [many for many, _ in statements] == [True, False, False]
    flushed = statements[0][1]
    assert flushed == sorted(flushed) and len(flushed) == len(CUSTOMERS) + 2
    # Segmentation reads the customer without features as before, its tickets counted
    # (once its cache entry, if any, has expired: a fresh cache here).
    fresh = CustomerStore(sessions, cache=CustomerCache(max_customers=10, ttl_seconds=60))
    counted = await fresh.customer("c-no-purchase", now=NOW)
    assert (counted.tier, counted.features.tickets_raised) == (Tier.POTENTIAL, 3)


def _counted_customer(parameters: Any) -> str:
    """The customer id a row of the flush's statement counts (named or positional)."""
    if isinstance(parameters, dict):
        return str(parameters["counted_customer"])
    return str(parameters[0])
