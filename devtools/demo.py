"""Synthetic customers and purchases: for the run command's demo and the benchmarks.

Deterministic for a seed. Plausible shapes: mostly individuals, some organisations and
government bodies; purchase counts and amounts skewed (a few customers hold most of the
value); some customers growing, some lapsed, some with no purchases at all.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import func, insert, select

from services.core import db, migrate
from services.segmenter.cache import CustomerCache
from services.segmenter.models import CustomerRow, PurchaseRow
from services.segmenter.store import CustomerStore

COUNTRIES = ("NL", "BE", "SE", "TR", "DE", "FR", "GB", "US")
LANGUAGE_OF = {"NL": "nl", "BE": "nl", "SE": "sv", "TR": "tr", "DE": "de", "FR": "fr",
               "GB": "en", "US": "en"}
FIRST_NAMES = ("Ayse", "Mehmet", "Sanne", "Daan", "Elin", "Lars", "Emma", "Noah", "Zeynep",
               "Johan", "Lotte", "Oskar", "Fatma", "Pieter", "Maja", "Can")
LAST_NAMES = ("Yilmaz", "de Vries", "Andersson", "Jansen", "Kaya", "Svensson", "Bakker",
              "Demir", "Lindqvist", "Peeters", "Smit", "Nilsson")
BANDS = ("low", "lower_middle", "middle", "upper_middle", "high")

# Customers the README's walk-through and the end-to-end tests refer to by id.
WELL_KNOWN = {
    "gov-ministry-1": "government",
    "org-acme-1": "organisation",
    "ind-loyal-1": "individual",  # years of steady buying: an existing customer
    "ind-vip-1": "individual",  # the most valuable
    "ind-rising-1": "individual",  # new and buying more and more: most growable
    "ind-new-1": "individual",  # signed up, never bought: a potential customer
}
# customer -> (purchases, amount, days between purchases)
_WELL_KNOWN_BUYING = {"gov-ministry-1": (12, 3000, 20), "org-acme-1": (8, 1500, 20),
                      "ind-loyal-1": (40, 40, 20), "ind-vip-1": (30, 4000, 12),
                      "ind-rising-1": (12, 250, 6), "ind-new-1": (0, 0, 1)}
_WELL_KNOWN_NAMES = {"gov-ministry-1": "Ministry of Examples", "org-acme-1": "Acme BV",
                     "ind-loyal-1": "Lotte Jansen", "ind-vip-1": "Johan Lindqvist",
                     "ind-rising-1": "Zeynep Kaya", "ind-new-1": "Can Demir"}


@dataclass(frozen=True)
class Generated:
    customer: dict[str, Any]
    purchases: list[dict[str, Any]]


def generate(count: int, *, seed: int = 7, today: date | None = None) -> Iterator[Generated]:
    rng = random.Random(seed)
    today = today or datetime.now(UTC).date()
    for customer_id, customer_type in WELL_KNOWN.items():
        yield _well_known(customer_id, customer_type, today)
    for number in range(max(0, count - len(WELL_KNOWN))):
        yield _customer(rng, f"cust-{number:07d}", today)


def _customer(rng: random.Random, customer_id: str, today: date) -> Generated:
    roll = rng.random()
    customer_type = "government" if roll < 0.03 else "organisation" if roll < 0.15 else "individual"
    country = rng.choice(COUNTRIES)
    signup = today - timedelta(days=rng.randint(0, 6 * 365))
    individual = customer_type == "individual"
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    customer = {
        "customer_id": customer_id,
        "customer_type": customer_type,
        "name": f"{first} {last}" if individual else f"{last} {rng.choice(('BV', 'AB', 'AS'))}",
        "email": f"{first.lower()}.{customer_id}@example.test",
        "birth_date": (today - timedelta(days=rng.randint(18 * 365, 85 * 365))
                       if individual else None),
        "gender": rng.choice(("female", "male", "non_binary", None)) if individual else None,
        "country": country,
        "language": LANGUAGE_OF[country],
        "socio_economic_band": rng.choice(BANDS) if individual else None,
        "signup_date": signup,
        "attributes": {"newsletter": rng.random() < 0.4},
    }
    return Generated(customer, list(_purchases(rng, customer_id, customer_type, signup, today)))


def _purchases(rng: random.Random, customer_id: str, customer_type: str, signup: date,
               today: date) -> Iterator[dict[str, Any]]:
    if rng.random() < 0.18:
        return  # a prospect: signed up, never bought
    scale = {"individual": 60.0, "organisation": 900.0, "government": 2500.0}[customer_type]
    count = min(200, int(rng.paretovariate(1.3)))
    growing = rng.random() < 0.15
    span = max(1, (today - signup).days)
    for _ in range(count):
        # Growing customers buy mostly in the last 90 days.
        days_ago = rng.randint(0, min(span, 90)) if growing and rng.random() < 0.7 \
            else rng.randint(0, span)
        amount = Decimal(str(round(rng.lognormvariate(0, 0.8) * scale, 2)))
        yield {"customer_id": customer_id, "amount": amount, "currency": "EUR",
               "purchased_at": datetime.combine(today - timedelta(days=days_ago),
                                                datetime.min.time(), UTC)
               + timedelta(minutes=rng.randint(0, 1439))}


def _well_known(customer_id: str, customer_type: str, today: date) -> Generated:
    customer: dict[str, Any] = {
        "customer_id": customer_id, "customer_type": customer_type,
        "name": _WELL_KNOWN_NAMES[customer_id],
        "email": f"{customer_id}@example.test",
        "birth_date": date(1980, 5, 17) if customer_type == "individual" else None,
        "gender": "female" if customer_id == "ind-loyal-1" else None,
        "country": "NL", "language": "nl",
        "socio_economic_band": "middle" if customer_type == "individual" else None,
        "signup_date": today - timedelta(
            days={"ind-new-1": 3, "ind-rising-1": 80}.get(customer_id, 900)),
        "attributes": {},
    }
    count, amount, spacing = _WELL_KNOWN_BUYING[customer_id]
    purchases = [
        {"customer_id": customer_id, "amount": Decimal(amount), "currency": "EUR",
         "purchased_at": datetime.combine(today - timedelta(days=spacing * n + 1),
                                          datetime.min.time(), UTC)}
        for n in range(count)
    ]
    return Generated(customer, purchases)


async def seed_if_empty(database_url: str, *, count: int = 2000) -> int:
    """Load demo customers into an empty store and compute their values and tiers;
    returns how many (0 if the store held data)."""
    loaded = await _insert_if_empty(database_url, count)
    if loaded:
        engine = db.engine(database_url)
        try:
            store = CustomerStore(db.sessions(engine),
                                  cache=CustomerCache(max_customers=0, ttl_seconds=1))
            await store.recompute_population(now=datetime.now(UTC))
        finally:
            await engine.dispose()
    return loaded


async def _insert_if_empty(database_url: str, count: int) -> int:
    await migrate.upgrade(database_url)
    engine = db.engine(database_url)
    try:
        async with engine.begin() as connection:
            existing = (await connection.execute(
                select(func.count()).select_from(CustomerRow))).scalar_one()
            if existing:
                return 0
            loaded = 0
            customers: list[dict[str, Any]] = []
            purchases: list[dict[str, Any]] = []
            for generated in generate(count):
                customers.append(generated.customer)
                purchases.extend(generated.purchases)
                loaded += 1
                if len(customers) >= 500:
                    await _write(connection, customers, purchases)
            await _write(connection, customers, purchases)
            return loaded
    finally:
        await engine.dispose()


async def _write(connection: Any, customers: list[dict[str, Any]],
                 purchases: list[dict[str, Any]]) -> None:
    if customers:
        await connection.execute(insert(CustomerRow), customers)
    if purchases:
        await connection.execute(insert(PurchaseRow), purchases)
    customers.clear()
    purchases.clear()
