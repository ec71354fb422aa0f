"""A large synthetic customer base written straight into the store's tables, fast.

For bench/segmenter_memory.py: a million customers through the import API (or the demo
generator) would take most of an hour, so the rows are generated here and written with
bulk INSERTs in chunks, through the project's own tables (services/segmenter/models.py).
Every 1000th customer row is checked against the import's row rules
(`rows.CustomerRecord`); each buyer's value features and tier are derived from the
purchases written with it by the store's own code (`features.raw_features`, `tier_of`,
against the default cutoffs, which are in force while no population run has stored
others), so the purchases, features and tiers tables agree.
"""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import FromClause
from sqlalchemy.dialects import sqlite

from services.segmenter import features, rows
from services.segmenter.models import CustomerFeaturesRow, CustomerRow, PurchaseRow
from services.segmenter.profiles import Tier

COUNTRIES = ("NL", "BE", "SE", "TR", "DE", "FR", "GB", "US")
BANDS = ("low", "lower_middle", "middle", "upper_middle", "high")
TYPES = ("individual",) * 18 + ("organisation", "government")


def customer_id(n: int) -> str:
    return f"cust-{n:07d}"


TEMPLATES = 4096  # distinct profiles and purchase histories, shared out by id


def _customer(rng: random.Random, n: int, today: date) -> dict[str, Any]:
    country = rng.choice(COUNTRIES)
    customer_type = rng.choice(TYPES)
    person = customer_type == "individual"
    return {
        "customer_id": customer_id(n), "customer_type": customer_type,
        "name": f"Customer {n}", "email": f"customer{n}@example.com",
        "birth_date": today - timedelta(days=rng.randint(18 * 365, 90 * 365))
        if person else None,
        "gender": rng.choice(("female", "male", "non_binary")) if person else None,
        "country": country, "language": "en",
        "socio_economic_band": rng.choice(BANDS) if person else None,
        "signup_date": today - timedelta(days=rng.randint(1, 3650)),
        "attributes": {"plan": rng.choice(("basic", "plus", "pro"))},
    }


def _purchases(rng: random.Random, n: int, now: datetime) -> list[dict[str, Any]]:
    if rng.random() > 0.35:  # most customers of a large base never bought (or long ago)
        return []
    return [{"customer_id": customer_id(n),
             "amount": round(rng.paretovariate(1.5) * 20, 2), "currency": "EUR",
             "purchased_at": now - timedelta(days=rng.uniform(0, 700))}
            for _ in range(rng.randint(1, 6))]


def _features(customer: dict[str, Any], bought: list[dict[str, Any]],
              now: datetime) -> dict[str, Any]:
    raw = features.raw_features(
        (features.Purchase(p["amount"], p["purchased_at"]) for p in bought),
        signup_date=customer["signup_date"], tickets_raised=0, now=now)
    tier = features.tier_of(raw, features.DEFAULT_CUTOFFS, features.TierPolicy())
    return {"customer_id": customer["customer_id"], "total_value": raw.total_value,
            "trailing_12m_value": raw.trailing_12m_value, "growth": raw.growth,
            "growth_ratio": raw.growth_ratio, "purchases": raw.purchases,
            "last_purchase_at": raw.last_purchase_at, "tickets_raised": 0,
            "tier": str(tier), "computed_at": now}


def _templates(rng: random.Random, now: datetime
               ) -> list[tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]]:
    made = []
    for n in range(TEMPLATES):
        customer = _customer(rng, n, now.date())
        # The import's row rules (dates as the import reads them).
        rows.CustomerRecord.model_validate(
            {**customer, **{k: customer[k] and customer[k].isoformat()
                            for k in ("birth_date", "signup_date")}})
        bought = _purchases(rng, n, now)
        made.append((customer, bought, _features(customer, bought, now)))
    return made


def generate(count: int, *, seed: int = 11, chunk: int = 50_000
             ) -> Iterator[tuple[list[dict[str, Any]], list[dict[str, Any]],
                                 list[dict[str, Any]]]]:
    """Chunks of (customers, purchases, features) rows: each customer a copy of one of
    TEMPLATES checked profiles with its own id, name and email."""
    rng = random.Random(seed)
    templates = _templates(rng, datetime.now(UTC))
    for start in range(0, count, chunk):
        customers: list[dict[str, Any]] = []
        purchases: list[dict[str, Any]] = []
        values: list[dict[str, Any]] = []
        for n in range(start, min(start + chunk, count)):
            customer, bought, value = templates[rng.randrange(TEMPLATES)]
            cid = customer_id(n)
            customers.append({**customer, "customer_id": cid, "name": f"Customer {n}",
                              "email": f"customer{n}@example.com"})
            purchases.extend({**p, "customer_id": cid} for p in bought)
            values.append({**value, "customer_id": cid})
        yield customers, purchases, values


def _insert(connection: sqlite3.Connection, table: FromClause,
            values: list[dict[str, Any]]) -> None:
    """executemany on the driver, values converted by the table's own column types."""
    dialect = sqlite.dialect()
    names = [column.name for column in table.columns if column.name in values[0]]
    convert = [(name, table.columns[name].type.dialect_impl(dialect).bind_processor(dialect))
               for name in names]
    connection.executemany(
        f"INSERT INTO {table.description} ({', '.join(names)})"
        f" VALUES ({', '.join('?' * len(names))})",
        [tuple(process(row[name]) if process else row[name] for name, process in convert)
         for row in values])


def write(database_path: str, count: int) -> dict[str, int]:
    """Write `count` customers (the store's schema must exist); rows written per table."""
    written = {"customers": 0, "purchases": 0, "customer_features": 0, "buyers": 0}
    connection = sqlite3.connect(database_path)
    try:
        # A benchmark's scratch store: losing it in a power cut costs nothing.
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=OFF")
        for customers, purchases, values in generate(count):
            with connection:  # one transaction a chunk
                _insert(connection, CustomerRow.__table__, customers)
                if purchases:
                    _insert(connection, PurchaseRow.__table__, purchases)
                _insert(connection, CustomerFeaturesRow.__table__, values)
            written["customers"] += len(customers)
            written["purchases"] += len(purchases)
            written["customer_features"] += len(values)
            written["buyers"] += sum(v["tier"] != str(Tier.POTENTIAL) for v in values)
    finally:
        connection.close()
    return written
