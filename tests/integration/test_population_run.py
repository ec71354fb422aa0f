"""The population run in a real SQL store (SQLite and PostgreSQL): it reads the customer
base a page at a time, and every customer is recomputed whatever the page size."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.segmenter.cache import CustomerCache
from services.segmenter.models import CustomerFeaturesRow, TierCutoffsRow
from services.segmenter.profiles import Tier
from services.segmenter.store import CustomerStore

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
SPEND = {"c-1": 50.0, "c-2": 120.0, "c-3": 400.0, "c-4": 900.0, "c-5": 30_000.0}
NEVER_BOUGHT = ("c-6", "c-7")


async def a_base(store: CustomerStore) -> None:
    for customer_id in [*SPEND, *NEVER_BOUGHT]:
        await store.save_customer({"customer_id": customer_id,
                                   "customer_type": "individual",
                                   "signup_date": date(2024, 1, 1)})
    for customer_id, amount in SPEND.items():
        await store.record_purchase(customer_id, amount, "EUR", NOW - timedelta(days=30),
                                    now=NOW)


class TestPopulationRun:
    async def test_every_customer_is_recomputed_a_page_at_a_time(
            self, sessions: async_sessionmaker[AsyncSession]) -> None:
        store = CustomerStore(sessions, cache=CustomerCache(max_customers=10,
                                                            ttl_seconds=60))
        await a_base(store)

        await store.recompute_population(now=NOW, chunk=2)

        async with sessions() as session:
            run = (await session.scalars(select(TierCutoffsRow))).one()
            tiers = dict((await session.execute(
                select(CustomerFeaturesRow.customer_id, CustomerFeaturesRow.tier))).all())
            computed = set((await session.scalars(
                select(CustomerFeaturesRow.computed_at))).all())
        assert run.customers == len(SPEND) + len(NEVER_BOUGHT)
        assert run.cutoffs["frequency"] == [1.0, 1.0, 1.0, 1.0]
        assert tiers["c-5"] == Tier.MOST_VALUABLE
        assert {tiers[c] for c in ("c-1", "c-2", "c-3", "c-4")} == {Tier.EXISTING}
        assert {tiers[c] for c in NEVER_BOUGHT} == {Tier.POTENTIAL}
        assert len(computed) == 1  # every row written by this run

    async def test_the_page_size_does_not_change_the_outcome(
            self, sessions: async_sessionmaker[AsyncSession]) -> None:
        store = CustomerStore(sessions, cache=CustomerCache(max_customers=10,
                                                            ttl_seconds=60))
        await a_base(store)

        await store.recompute_population(now=NOW, chunk=3)
        await store.recompute_population(now=NOW, chunk=1000)

        async with sessions() as session:
            runs = (await session.scalars(
                select(TierCutoffsRow).order_by(TierCutoffsRow.run_id))).all()
        assert [run.cutoffs for run in runs[:1]] == [run.cutoffs for run in runs[1:]]
        assert [run.customers for run in runs] == [7, 7]

    async def test_each_customers_purchases_are_read_once_a_run(
            self, sessions: async_sessionmaker[AsyncSession]) -> None:
        """The tiers against the new cutoffs come from the values the run has just
        stored: the purchases are read for the values, not again for the tiers."""
        store = CustomerStore(sessions, cache=CustomerCache(max_customers=10,
                                                            ttl_seconds=60))
        await a_base(store)
        engine = sessions.kw["bind"].sync_engine
        statements: list[str] = []

        def seen(_connection: Any, _cursor: Any, statement: str, *_args: Any) -> None:
            statements.append(statement)

        event.listen(engine, "before_cursor_execute", seen)
        try:
            await store.recompute_population(now=NOW, chunk=3)
        finally:
            event.remove(engine, "before_cursor_execute", seen)

        purchase_reads = [s for s in statements
                          if s.lstrip().startswith("SELECT") and "FROM purchases" in s]
        assert len(purchase_reads) == 3  # one a page of 3, 3 and 1 customers
        async with sessions() as session:
            tiers = dict((await session.execute(
                select(CustomerFeaturesRow.customer_id, CustomerFeaturesRow.tier))).all())
        assert tiers["c-5"] == Tier.MOST_VALUABLE
