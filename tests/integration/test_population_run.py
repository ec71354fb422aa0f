"""The population run in a real SQL store (SQLite and PostgreSQL): it reads the customer
base a page at a time, every customer is recomputed whatever the page size, and each
change of tier is stored and reported."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.segmenter import store as segmenter_store
from services.segmenter.cache import CustomerCache
from services.segmenter.models import CustomerFeaturesRow, PurchaseRow, TierCutoffsRow
from services.segmenter.profiles import Tier, ValueFeatures
from services.segmenter.store import CustomerStore, TierChange

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(hours=1)
SPEND = {"c-1": 50.0, "c-2": 120.0, "c-3": 400.0, "c-4": 900.0, "c-5": 30_000.0}
NEVER_BOUGHT = ("c-6", "c-7")
# What an erasure deletes of a customer, in its order (services/segmenter/erasure.py).
ERASED_TABLES = ("purchases", "customer_features", "customers")


async def a_base(store: CustomerStore, *, long_ago: tuple[str, ...] = ()) -> None:
    """The customers of SPEND bought a month ago (those `long_ago`, 300 days ago: within
    the trailing year, not in the growth's half-years)."""
    for customer_id in [*SPEND, *NEVER_BOUGHT]:
        await store.save_customer({"customer_id": customer_id,
                                   "customer_type": "individual",
                                   "signup_date": date(2024, 1, 1)})
    for customer_id, amount in SPEND.items():
        days = 300 if customer_id in long_ago else 30
        await store.record_purchase(customer_id, amount, "EUR", NOW - timedelta(days=days),
                                    now=NOW)


def a_store(sessions: async_sessionmaker[AsyncSession]) -> CustomerStore:
    return CustomerStore(sessions, cache=CustomerCache(max_customers=10, ttl_seconds=60))


@contextlib.contextmanager
def once_before(sessions: async_sessionmaker[AsyncSession], statement_start: str,
                *meanwhile: str) -> Iterator[list[str]]:
    """Run the `meanwhile` statements once, on the store's own connection, just before
    its first statement that starts with `statement_start`: the write then sees what
    another writer committed in between. Yields the statements that ran (none: it
    never came)."""
    engine = sessions.kw["bind"].sync_engine
    ran: list[str] = []

    def first(_connection: Any, cursor: Any, statement: str, *_args: Any) -> None:
        if not ran and statement.startswith(statement_start):
            ran.extend(meanwhile)
            for sql in meanwhile:
                cursor.execute(sql)

    event.listen(engine, "before_cursor_execute", first)
    try:
        yield ran
    finally:
        event.remove(engine, "before_cursor_execute", first)


async def stored_tiers(sessions: async_sessionmaker[AsyncSession]) -> dict[str, str]:
    async with sessions() as session:
        return dict((await session.execute(
            select(CustomerFeaturesRow.customer_id, CustomerFeaturesRow.tier))).all())


async def computed_ats(sessions: async_sessionmaker[AsyncSession]) -> dict[str, datetime]:
    """When each stored customer's values were computed."""
    async with sessions() as session:
        return dict((await session.execute(
            select(CustomerFeaturesRow.customer_id, CustomerFeaturesRow.computed_at))).all())


class TestPopulationRun:
    async def test_every_customer_is_recomputed_a_page_at_a_time(
            self, sessions: async_sessionmaker[AsyncSession]) -> None:
        store = a_store(sessions)
        await a_base(store)

        await store.recompute_population(now=LATER, chunk=2)

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
        assert computed == {LATER}  # every customer's values computed by this run

    async def test_the_page_size_does_not_change_the_outcome(
            self, sessions: async_sessionmaker[AsyncSession]) -> None:
        store = a_store(sessions)
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
        store = a_store(sessions)
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

    async def test_each_change_of_tier_is_stored_and_reported(
            self, sessions: async_sessionmaker[AsyncSession]) -> None:
        store = a_store(sessions)
        # c-5's spend is old: c-4's growth, under the default cutoff, is the base's most.
        await a_base(store, long_ago=("c-5",))
        assert (await stored_tiers(sessions))["c-4"] == Tier.EXISTING

        changes = await store.recompute_population(now=LATER, chunk=2)

        assert changes == [TierChange("c-4", Tier.EXISTING, Tier.MOST_GROWABLE)]
        tiers = await stored_tiers(sessions)
        assert tiers["c-4"] == Tier.MOST_GROWABLE
        assert tiers["c-5"] == Tier.MOST_VALUABLE

    async def test_a_tier_is_written_only_over_the_values_it_was_decided_from(
            self, sessions: async_sessionmaker[AsyncSession]) -> None:
        """A refresh of c-4 writes between the run's read of c-4 and its write of c-4's
        tier (on SQLite the read is outside the write's transaction): the refresh's
        values keep the tier it decided, and the run reports no change of c-4."""
        store = a_store(sessions)
        await a_base(store, long_ago=("c-5",))  # the run would make c-4 most growable
        with once_before(sessions, "UPDATE customer_features SET tier",
                         "UPDATE customer_features SET tier = 'most_valuable',"
                         " purchases = purchases + 1 WHERE customer_id = 'c-4'") as refreshed:
            changes = await store.recompute_population(now=LATER, chunk=10)

        assert refreshed
        assert changes == []
        assert (await stored_tiers(sessions))["c-4"] == Tier.MOST_VALUABLE

    async def test_a_customer_stored_during_the_run_gets_values_and_a_tier(
            self, sessions: async_sessionmaker[AsyncSession]) -> None:
        """A customer and its purchase stored after the values were computed, with no
        refresh of its own (as an import whose refresh failed leaves it): the last pass
        computes its values rather than take its tier from values it does not have."""

        class JoinedDuringTheRun(CustomerStore):
            async def stored_values(self, chunk: int) -> AsyncIterator[ValueFeatures]:
                async for values in super().stored_values(chunk):
                    yield values
                await self.save_customer({"customer_id": "c-0",
                                          "customer_type": "individual"})
                async with sessions() as session, session.begin():
                    session.add(PurchaseRow(customer_id="c-0", amount=50_000.0,
                                            currency="EUR",
                                            purchased_at=NOW - timedelta(days=10)))

        store = JoinedDuringTheRun(sessions, cache=CustomerCache(max_customers=10,
                                                                 ttl_seconds=60))
        await a_base(store)

        changes = await store.recompute_population(now=LATER, chunk=3)

        assert TierChange("c-0", Tier.POTENTIAL, Tier.MOST_VALUABLE) in changes
        assert (await stored_tiers(sessions))["c-0"] == Tier.MOST_VALUABLE

    async def test_a_count_of_tickets_flushed_while_values_are_computed_stays(
            self, sessions: async_sessionmaker[AsyncSession]) -> None:
        store = a_store(sessions)
        await a_base(store)
        await store.count_tickets({"c-1": 2}, now=NOW)
        # The segmenter's flush, just before the values are written.
        with once_before(sessions, "INSERT INTO customer_features",
                         "UPDATE customer_features SET tickets_raised ="
                         " tickets_raised + 5 WHERE customer_id = 'c-1'") as flushed:
            await store.refresh_features(["c-1"], now=LATER)

        async with sessions() as session:
            tickets = (await session.scalars(
                select(CustomerFeaturesRow.tickets_raised)
                .where(CustomerFeaturesRow.customer_id == "c-1"))).one()
        assert flushed
        assert tickets == 7

    async def test_a_customer_erased_while_values_are_computed_stays_erased(
            self, sessions: async_sessionmaker[AsyncSession]) -> None:
        store = a_store(sessions)
        await a_base(store)
        async with sessions() as session, session.begin():  # a tier its values will change
            await session.execute(text("UPDATE customer_features SET tier = 'most_valuable'"
                                       " WHERE customer_id = 'c-2'"))
        # The rows an erasure of c-2 deletes, in its order, gone after c-2's purchases
        # were read and before the values are written.
        with once_before(sessions, "INSERT INTO customer_features",
                         *(f"DELETE FROM {table} WHERE customer_id = 'c-2'"
                           for table in ERASED_TABLES)) as erased:
            changes = await store.refresh_features(["c-1", "c-2", "c-3"], now=LATER)

        computed = await computed_ats(sessions)
        assert erased
        assert "c-2" not in computed
        assert "c-2" not in {change.customer_id for change in changes}
        assert computed["c-1"] == computed["c-3"] == LATER
        assert computed["c-4"] == NOW

    async def test_values_from_a_later_read_stand_against_a_refresh_that_read_before(
            self, sessions: async_sessionmaker[AsyncSession],
            monkeypatch: pytest.MonkeyPatch) -> None:
        """Two refreshes of c-2 race: the first reads c-2's purchases; a purchase arrives
        and its refresh, whose clock reads a minute earlier, writes; the first writes
        last. The values of both purchases stand, and the first reports no change of
        the tier it did not write."""
        store = a_store(sessions)
        await a_base(store)
        async with sessions() as session, session.begin():  # a tier the first would change
            await session.execute(text("UPDATE customer_features SET tier = 'most_valuable'"
                                       " WHERE customer_id = 'c-2'"))
        read, purchased = asyncio.Event(), asyncio.Event()
        value_inputs = segmenter_store._value_inputs

        async def read_then_wait(session: AsyncSession, ids: list[str]) -> Any:
            inputs = await value_inputs(session, ids)
            if not read.is_set():  # the first refresh, once it has read
                read.set()
                await purchased.wait()
            return inputs

        monkeypatch.setattr(segmenter_store, "_value_inputs", read_then_wait)
        first = asyncio.create_task(store.refresh_features(["c-2"], now=LATER))
        await read.wait()
        second = await store.record_purchase("c-2", 50_000.0, "EUR", NOW,
                                             now=LATER - timedelta(minutes=1))
        purchased.set()
        changes = await first

        async with sessions() as session:
            stored = (await session.execute(
                select(CustomerFeaturesRow.purchases, CustomerFeaturesRow.total_value,
                       CustomerFeaturesRow.tier, CustomerFeaturesRow.computed_at)
                .where(CustomerFeaturesRow.customer_id == "c-2"))).one()
        assert second is None  # most valuable with it, as stored before
        assert tuple(stored) == (2, 50_120.0, Tier.MOST_VALUABLE, LATER - timedelta(minutes=1))
        assert changes == []

    async def test_an_erasure_the_write_waits_for_leaves_the_others_written(
            self, sessions: async_sessionmaker[AsyncSession]) -> None:
        """An erasure of c-2 holds its rows, not yet committed, while the refresh reads c-2
        and writes; it commits while the write waits for it. On PostgreSQL the write
        found c-2 and then fails its foreign key: the page is computed once more."""
        store = a_store(sessions)
        await a_base(store)
        bind = sessions.kw["bind"]
        writes = 0
        commits: list[asyncio.Task[None]] = []
        async with bind.connect() as erasing:
            for table in ERASED_TABLES:
                await erasing.execute(text(f"DELETE FROM {table} WHERE customer_id = 'c-2'"))

            def commit_soon(_connection: Any, _cursor: Any, statement: str,
                            *_args: Any) -> None:
                nonlocal writes
                if statement.startswith("INSERT INTO customer_features"):
                    writes += 1
                    if not commits:  # once the first write waits on the erasure's rows
                        asyncio.get_running_loop().call_later(0.5, lambda: commits.append(
                            asyncio.ensure_future(erasing.commit())))

            event.listen(bind.sync_engine, "before_cursor_execute", commit_soon)
            try:
                changes = await store.refresh_features(["c-1", "c-2", "c-3"], now=LATER)
            finally:
                event.remove(bind.sync_engine, "before_cursor_execute", commit_soon)
            await asyncio.gather(*commits)

        computed = await computed_ats(sessions)
        assert commits
        assert "c-2" not in computed
        assert "c-2" not in {change.customer_id for change in changes}
        assert computed["c-1"] == computed["c-3"] == LATER
        assert writes == (2 if bind.dialect.name == "postgresql" else 1)
