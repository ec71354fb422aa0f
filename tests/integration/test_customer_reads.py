"""The customer store's reads for segmentation (SQLite and PostgreSQL): one customer, a
batch's preload and the whole base give the same customer, whether or not their values
were computed yet."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.segmenter.cache import CustomerCache
from services.segmenter.models import CustomerRow
from services.segmenter.profiles import (
    NO_FEATURES,
    Customer,
    CustomerProfile,
    CustomerType,
    Tier,
)
from services.segmenter.store import CustomerStore

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def a_store(sessions: async_sessionmaker[AsyncSession]) -> CustomerStore:
    return CustomerStore(sessions, cache=CustomerCache(max_customers=10, ttl_seconds=60))


async def test_every_read_gives_the_same_customer(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    writer = a_store(sessions)
    await writer.save_customer({"customer_id": "c-buyer", "customer_type": "organisation",
                                "country": "NL", "birth_date": date(1980, 2, 3),
                                "signup_date": date(2024, 1, 1), "attributes": {"vip": True}})
    await writer.record_purchase("c-buyer", 30_000.0, "EUR", NOW - timedelta(days=10),
                                 now=NOW)
    async with sessions() as session, session.begin():  # imported, values not computed yet
        session.add(CustomerRow(customer_id="c-new", customer_type="individual"))

    single, batch = a_store(sessions), a_store(sessions)
    await batch.preload({"c-buyer", "c-new", "c-unknown"})
    read_one = {cid: await single.customer(cid, now=NOW)
                for cid in ("c-buyer", "c-new", "c-unknown")}
    read_batch = {cid: batch.cached_customer(cid, now=NOW)
                  for cid in ("c-buyer", "c-new", "c-unknown")}
    read_all = {c.customer_id: c async for c in single.all_customers(now=NOW)}

    assert read_batch == read_one
    assert read_all == {cid: read_one[cid] for cid in ("c-buyer", "c-new")}
    buyer = read_one["c-buyer"]
    assert buyer.profile == CustomerProfile(
        "c-buyer", CustomerType.ORGANISATION, birth_date=date(1980, 2, 3), country="NL",
        signup_date=date(2024, 1, 1), attributes={"vip": True})
    assert (buyer.tier, buyer.features.purchases, buyer.features.total_value,
            buyer.features.last_purchase_at) == (
        Tier.MOST_VALUABLE, 1, 30_000.0, NOW - timedelta(days=10))
    assert read_one["c-new"] == Customer(
        "c-new", CustomerProfile("c-new", CustomerType.INDIVIDUAL), NO_FEATURES,
        Tier.POTENTIAL)
    assert read_one["c-unknown"] == Customer("c-unknown", None, NO_FEATURES, Tier.POTENTIAL)
