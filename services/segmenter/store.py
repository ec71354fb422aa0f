"""The customer store: profiles, purchases, value features and tiers."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Insert,
    Integer,
    Row,
    Select,
    String,
    Table,
    and_,
    bindparam,
    exists,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.core import db
from services.segmenter import erasure, features, imports
from services.segmenter.cache import CustomerCache
from services.segmenter.models import (
    CustomerFeaturesRow,
    CustomerRow,
    PurchaseRow,
    TierCutoffsRow,
)
from services.segmenter.profiles import (
    NO_FEATURES,
    Customer,
    CustomerProfile,
    CustomerType,
    Tier,
    ValueFeatures,
)
from services.segmenter.rows import CustomerRecord, PurchaseRecord, RowError


@dataclass(frozen=True)
class TierChange:
    customer_id: str
    previous: Tier
    current: Tier


def to_profile(row: CustomerRow | Row[Any]) -> CustomerProfile:
    return CustomerProfile(
        customer_id=row.customer_id, customer_type=CustomerType(row.customer_type),
        birth_date=row.birth_date, gender=row.gender, country=row.country,
        language=row.language, socio_economic_band=row.socio_economic_band,
        signup_date=row.signup_date, attributes=row.attributes or {})


def to_features(row: CustomerFeaturesRow | Row[Any] | None) -> ValueFeatures:
    if row is None:
        return NO_FEATURES
    return ValueFeatures(
        total_value=row.total_value, trailing_12m_value=row.trailing_12m_value,
        growth=row.growth, growth_ratio=row.growth_ratio, purchases=row.purchases,
        last_purchase_at=row.last_purchase_at, tickets_raised=row.tickets_raised)


_FEATURES = cast(Table, CustomerFeaturesRow.__table__)
# The values a customer's features row keeps (the scores and tenure are derived when
# read): those computed from its purchases, and the count of tickets it raised, which
# the segmenter's flush adds to.
_COMPUTED_VALUES = ("total_value", "trailing_12m_value", "growth", "growth_ratio",
                    "purchases", "last_purchase_at")
_STORED_VALUES = (*_COMPUTED_VALUES, "tickets_raised")
_VALUE_COLUMNS = tuple(getattr(CustomerFeaturesRow, name) for name in _STORED_VALUES)

# What segmentation reads of a customer, as plain columns: a row per customer without
# the ORM's entities and identity map, which cost more than the rest of a cache miss.
_CUSTOMER_COLUMNS = (
    CustomerRow.customer_id, CustomerRow.customer_type, CustomerRow.birth_date,
    CustomerRow.gender, CustomerRow.country, CustomerRow.language,
    CustomerRow.socio_economic_band, CustomerRow.signup_date, CustomerRow.attributes,
    *_VALUE_COLUMNS, CustomerFeaturesRow.tier)


def _customers() -> Select[Any]:
    return (select(*_CUSTOMER_COLUMNS)
            .outerjoin(CustomerFeaturesRow,
                       CustomerFeaturesRow.customer_id == CustomerRow.customer_id))


# Built once, not on each cache miss: building a statement costs a good part of running
# it on a small batch.
_CUSTOMERS_AMONG = _customers().where(
    CustomerRow.customer_id.in_(bindparam("customer_ids", expanding=True)))
_CUSTOMER = _customers().where(CustomerRow.customer_id == bindparam("customer_id"))


class CustomerStore:
    """Reads go through the cache; every write drops the customer from it."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], *, cache: CustomerCache,
                 policy: features.TierPolicy | None = None) -> None:
        self._sessions = sessions
        self.cache = cache
        self.policy = policy or features.TierPolicy()
        self.cutoffs = features.DEFAULT_CUTOFFS

    @property
    def sessions(self) -> async_sessionmaker[AsyncSession]:
        return self._sessions

    # Reading -------------------------------------------------------------------------

    async def customer(self, customer_id: str, *, now: datetime) -> Customer:
        """The customer as segmentation sees it; an unknown id is a potential customer."""
        cached = self.cache.get(customer_id)
        if cached is None:
            cached = await self._load(customer_id)
            self.cache.put(cached)
        return self._as_of(cached, now)

    def cached_customer(self, customer_id: str, *, now: datetime) -> Customer | None:
        """The customer if the cache holds it, without asking the database."""
        cached = self.cache.get(customer_id)
        return None if cached is None else self._as_of(cached, now)

    def _as_of(self, customer: Customer, now: datetime) -> Customer:
        """Scores depend on the time and the cutoffs in force, not only on stored values."""
        signup = customer.profile.signup_date if customer.profile else None
        value = features.scored(customer.features, self.cutoffs, now=now, signup_date=signup)
        return Customer(customer.customer_id, customer.profile, value, customer.tier)

    async def preload(self, customer_ids: set[str]) -> bool:
        """Put every customer of a batch that the cache lacks into it, in one query;
        whether the database was asked."""
        missing = [cid for cid in customer_ids if not self.cache.holds(cid)]
        if not missing or not self.cache.enabled:
            return False
        async with self._sessions() as session:
            found = (await session.execute(_CUSTOMERS_AMONG, {"customer_ids": missing})).all()
        known = {row.customer_id: _as_customer(row) for row in found}
        for customer_id in missing:
            self.cache.put(known.get(customer_id)
                           or Customer(customer_id, None, NO_FEATURES, Tier.POTENTIAL))
        return True

    async def _load(self, customer_id: str) -> Customer:
        async with self._sessions() as session:
            found = (await session.execute(_CUSTOMER, {"customer_id": customer_id})).first()
        if found is None:
            return Customer(customer_id, None, NO_FEATURES, Tier.POTENTIAL)
        return _as_customer(found)

    async def all_customers(self, *, now: datetime,
                            chunk: int = 1000) -> AsyncIterator[Customer]:
        """Every customer as segmentation sees it now, streamed in chunks (for the
        analysis of a rule set over the whole base)."""
        async with self._sessions() as session:
            result = await session.stream(
                _customers().order_by(CustomerRow.customer_id)
                .execution_options(yield_per=chunk))
            async for row in result:
                yield self._as_of(_as_customer(row), now)

    async def profile_row(self, customer_id: str) -> CustomerRow | None:
        async with self._sessions() as session:
            return await session.get(CustomerRow, customer_id)

    # Writing -------------------------------------------------------------------------

    async def save_customer(self, fields: dict[str, Any]) -> bool:
        """Create or replace a customer's profile; True if it was created."""
        async with self._sessions() as session, session.begin():
            existing = await session.get(CustomerRow, fields["customer_id"])
            if existing is None:
                session.add(CustomerRow(**fields))
            else:
                for name, value in fields.items():
                    setattr(existing, name, value)
        self.cache.forget(fields["customer_id"])
        return existing is None

    async def record_purchase(self, customer_id: str, amount: float, currency: str,
                              purchased_at: datetime, *, now: datetime) -> TierChange | None:
        async with self._sessions() as session, session.begin():
            session.add(PurchaseRow(customer_id=customer_id, amount=amount, currency=currency,
                                    purchased_at=purchased_at))
        changes = await self.refresh_features([customer_id], now=now)
        return changes[0] if changes else None

    async def refresh_features(self, customer_ids: Iterable[str], *,
                               now: datetime) -> list[TierChange]:
        """Recompute the customers' values from their purchases, and their tiers against
        the cutoffs in force; returns the tier changes written. A customer erased
        meanwhile gets no values and no change; an erasure the write waited for
        (PostgreSQL: not yet committed when the write found the customer) has the page
        computed once more. Values another refresh wrote from a later read stand
        (`_read_later`), and this one reports no change of theirs."""
        ids = sorted(set(customer_ids))
        if not ids:
            return []
        try:
            changes = await self._refresh(ids, now)
        except IntegrityError:
            changes = await self._refresh(ids, now)
        for customer_id in ids:
            self.cache.forget(customer_id)
        return changes

    async def _refresh(self, ids: list[str], now: datetime) -> list[TierChange]:
        async with self._sessions() as session, session.begin():
            inputs = await _value_inputs(session, ids)
            rows, changes = self._valued(ids, inputs, now)
            if rows:
                await session.execute(_features_upsert(session.get_bind().dialect.name),
                                      rows)
            if changes:  # those this write stored: not erased, not from an earlier read
                wrote = {row["valued_customer_id"]: row["valued_purchases"] for row in rows}
                stored = (await session.execute(
                    select(_FEATURES.c.customer_id, _FEATURES.c.purchases,
                           _FEATURES.c.computed_at)
                    .where(_FEATURES.c.customer_id.in_(
                        [change.customer_id for change in changes])))).all()
                kept = {customer_id for customer_id, purchases, computed_at in stored
                        if (purchases, computed_at) == (wrote[customer_id], now)}
                changes = [change for change in changes if change.customer_id in kept]
        return changes

    def _valued(self, ids: list[str], inputs: _ValueInputs, now: datetime,
                ) -> tuple[list[dict[str, Any]], list[TierChange]]:
        """The features rows of the customers among `ids` (in their order, as the flush
        of tickets raised takes its locks), and their changes of tier."""
        rows: list[dict[str, Any]] = []
        changes: list[TierChange] = []
        for customer_id in ids:
            if customer_id not in inputs.signed_up:
                continue  # not a customer of the store
            tickets, was = inputs.previous.get(customer_id, (0, Tier.POTENTIAL))
            raw = features.raw_features(
                inputs.bought.get(customer_id, ()), signup_date=inputs.signed_up[customer_id],
                tickets_raised=tickets, now=now)
            tier = features.tier_of(raw, self.cutoffs, self.policy)
            rows.append(_valued_row(customer_id, raw, tier, now))
            if tier != was:
                changes.append(TierChange(customer_id, was, tier))
        return rows, changes

    async def count_tickets(self, counts: dict[str, int], *, now: datetime) -> None:
        """Add to customers' `tickets_raised` (flushed in batches by the segmenter)."""
        if not counts:
            return
        customer_ids = sorted(counts)
        # One statement for them all, run once per customer by the driver: the store's
        # write lock, which every service's writes wait for, is held for the statement's
        # run alone, not across a round trip per customer (a flush after a busy spell
        # held it for seconds). In the customers' order, a new row or not, so that the
        # flushes and the refreshes of values take their row locks in one order.
        async with self._sessions() as session, session.begin():
            await session.execute(_count_tickets(session.get_bind().dialect.name), [
                {"counted_customer": customer_id, "counted_tickets": counts[customer_id],
                 "counted_at": now} for customer_id in customer_ids])

    # Population runs -----------------------------------------------------------------

    async def load_cutoffs(self) -> features.Cutoffs:
        async with self._sessions() as session:
            latest = (await session.scalars(
                select(TierCutoffsRow).order_by(TierCutoffsRow.run_id.desc()).limit(1))
            ).first()
        self.cutoffs = features.Cutoffs.from_dict(latest.cutoffs) if latest else \
            features.DEFAULT_CUTOFFS
        return self.cutoffs

    async def recompute_population(self, *, now: datetime, chunk: int = 2000) -> list[TierChange]:
        """Recompute every customer's values, then the cutoffs, then every tier. The base
        is read a page at a time: memory does not grow with the number of customers."""
        customers = 0
        async for page in self.customer_id_pages(chunk):
            await self.refresh_features(page, now=now)
            customers += len(page)
        population = features.PopulationValues(self.policy, now=now)
        async for values in self.stored_values(chunk):
            population.add(values)
        cutoffs = population.cutoffs()
        async with self._sessions() as session, session.begin():
            session.add(TierCutoffsRow(computed_at=now, cutoffs=cutoffs.to_dict(),
                                       customers=customers))
        self.cutoffs = cutoffs
        changes: list[TierChange] = []
        async for page in self.customer_id_pages(chunk):
            changes.extend(await self._retier(page, now=now))
        self.cache.clear()
        return changes

    async def _retier(self, customer_ids: list[str], *, now: datetime) -> list[TierChange]:
        """The customers' tiers against the cutoffs in force, from their stored values
        (the population run has just computed them; a tier reads nothing else, so their
        purchases are not read again). Only the tier is written: a count of tickets
        raised flushed meanwhile stays. A customer stored since, without values, has them
        computed. The rows are locked in the customers' order (by code point, as Python
        sorts them for the flush and the refresh) until their tiers are written
        (PostgreSQL). On SQLite the read is outside the write's transaction: a tier is
        written only where the row is as read, so values a refresh wrote meanwhile keep
        the tier it decided from them, and this run reports no change of theirs."""
        changes: list[TierChange] = []
        async with self._sessions() as session, session.begin():
            stored = (await session.execute(
                select(*_RETIER_READS)
                .where(CustomerFeaturesRow.customer_id.in_(customer_ids))
                .order_by(_by_code_point(session.get_bind().dialect.name))
                .with_for_update())).all()
            read = {row.customer_id: row for row in stored}
            for row in stored:
                was = Tier(row.tier)
                tier = features.tier_of(to_features(row), self.cutoffs, self.policy)
                if tier != was:
                    changes.append(TierChange(row.customer_id, was, tier))
            if changes:
                await session.execute(_RETIER, [
                    {"retiered": change.customer_id, "new_tier": str(change.current),
                     "read_tier": str(change.previous),
                     "read_computed_at": read[change.customer_id].computed_at}
                    for change in changes])
                now_stored = {customer_id: (tier, computed_at)
                              for customer_id, tier, computed_at in (await session.execute(
                                  select(_FEATURES.c.customer_id, _FEATURES.c.tier,
                                         _FEATURES.c.computed_at)
                                  .where(_FEATURES.c.customer_id.in_(
                                      [change.customer_id for change in changes])))).all()}
                changes = [change for change in changes if now_stored.get(change.customer_id)
                           == (change.current, read[change.customer_id].computed_at)]
        for change in changes:
            self.cache.forget(change.customer_id)
        without_values = set(customer_ids).difference(row.customer_id for row in stored)
        return changes + await self.refresh_features(without_values, now=now)

    async def stored_values(self, chunk: int) -> AsyncIterator[ValueFeatures]:
        """Every customer's stored values, streamed `chunk` rows at a time."""
        async with self._sessions() as session:
            async for row in await session.stream(
                    select(*_VALUE_COLUMNS).execution_options(yield_per=chunk)):
                yield to_features(row)

    async def customer_id_pages(self, size: int) -> AsyncIterator[list[str]]:
        """Every customer id in order, `size` at a time (each page its own query)."""
        after = ""
        while True:
            async with self._sessions() as session:
                page = list((await session.scalars(
                    select(CustomerRow.customer_id).where(CustomerRow.customer_id > after)
                    .order_by(CustomerRow.customer_id).limit(size))).all())
            if not page:
                return
            yield page
            after = page[-1]

    async def tier_sizes(self) -> dict[str, int]:
        async with self._sessions() as session:
            return {tier: count for tier, count in (await session.execute(
                select(CustomerFeaturesRow.tier, func.count())
                .group_by(CustomerFeaturesRow.tier))).all()}

    # Bulk import and erasure ---------------------------------------------------------

    async def import_customers(
            self, rows: AsyncIterator[CustomerRecord | RowError]) -> imports.ImportReport:
        return await imports.import_customers(self._sessions, rows)

    async def import_purchases(self, rows: AsyncIterator[PurchaseRecord | RowError], *,
                               on_chunk: imports.OnChunk) -> imports.ImportReport:
        return await imports.import_purchases(self._sessions, rows, on_chunk=on_chunk)

    async def erase(self, customer_id: str) -> erasure.Erasure:
        return await erasure.erase_customer(self, customer_id)


@functools.cache
def _count_tickets(dialect: str) -> Insert:
    """A customer's tickets added to its features row, the row made first if the customer
    is known and has none yet (saved since, without a purchase or a population run: the
    features of no purchases, tier potential, which is what segmentation reads of such a
    customer until its values are computed). An unknown customer has nothing to count
    on."""
    customer = bindparam("counted_customer", type_=String())
    known = select(customer, bindparam("counted_at", type_=db.UtcDateTime()),
                   bindparam("counted_tickets", type_=Integer())).where(
        exists().where(CustomerRow.customer_id == customer))
    statement = db.insert_on_conflict(dialect)(_FEATURES).from_select(
        ["customer_id", "computed_at", "tickets_raised"], known)
    return statement.on_conflict_do_update(
        index_elements=[_FEATURES.c.customer_id],
        set_={"tickets_raised": _FEATURES.c.tickets_raised + statement.excluded.tickets_raised})


# What a tier is decided from (`features.tier_of`, through `to_features`), by customer.
_TIER_INPUTS = (CustomerFeaturesRow.customer_id, CustomerFeaturesRow.tier, *_VALUE_COLUMNS)
# Built once (see _CUSTOMERS_AMONG).
# What a run's retiering reads: the tier's inputs, and when its values were computed.
_RETIER_READS: tuple[Any, ...] = (*_TIER_INPUTS, CustomerFeaturesRow.computed_at)
# A tier written only where the row is as it was read (see `_retier`).
_RETIER = (update(_FEATURES).where(_FEATURES.c.customer_id == bindparam("retiered"),
                                   _FEATURES.c.tier == bindparam("read_tier"),
                                   _FEATURES.c.computed_at == bindparam("read_computed_at"))
           .values(tier=bindparam("new_tier")))


def _by_code_point(dialect: str) -> ColumnElement[str]:
    """Customer ids in the order Python sorts them: a PostgreSQL database's collation
    (en_US and the like) orders case and punctuation otherwise; SQLite compares bytes."""
    column = _FEATURES.c.customer_id
    return column.collate("C") if dialect == "postgresql" else column


# What a refresh writes of a customer, each column given as `valued_<column>`.
_VALUED_COLUMNS = ("customer_id", *_STORED_VALUES, "tier", "computed_at")


@functools.cache
def _features_upsert(dialect: str) -> Insert:
    """Customers' computed values and tiers, written whether their row exists or not, one
    statement run for each (executemany), for customers still in the store: one erased
    since its inputs were read gets no row back (its erasure stands) and the rest of the
    page is written. An existing row keeps its count of tickets raised: the segmenter's
    flush adds to it, and a count flushed while the values were computed stays. It keeps
    its values too if they were computed from a later read (`_read_later`).
    `computed_at` says when the values were computed."""
    valued = {name: bindparam(f"valued_{name}", type_=_FEATURES.c[name].type)
              for name in _VALUED_COLUMNS}
    known = select(*valued.values()).where(
        exists().where(CustomerRow.customer_id == valued["customer_id"]))
    statement = db.insert_on_conflict(dialect)(_FEATURES).from_select(
        list(_VALUED_COLUMNS), known)
    return statement.on_conflict_do_update(
        index_elements=[_FEATURES.c.customer_id],
        set_={name: statement.excluded[name]
              for name in (*_COMPUTED_VALUES, "tier", "computed_at")},
        where=_read_later(statement.excluded))


def _read_later(excluded: Any) -> ColumnElement[bool]:
    """Whether values about to be written (`excluded`) were computed from a later read of
    the customer's purchases than the stored ones: from more purchases (a customer's
    purchases only grow, until its erasure deletes its values with them), or from as
    many at a later moment. Two refreshes of one customer race when purchases arrive
    together, or when a population run meets one; their reads are not in their writes'
    transactions (SQLite reads outside one; PostgreSQL reads committed rows, unlocked).
    Without this, the one that read first and wrote last left values that missed a
    purchase until the next refresh."""
    stored = _FEATURES.c
    return or_(excluded.purchases > stored.purchases,
               and_(excluded.purchases == stored.purchases,
                    excluded.computed_at >= stored.computed_at))


@dataclass(frozen=True)
class _ValueInputs:
    """What customers' values are computed from, by customer."""

    signed_up: dict[str, date | None]  # the profile's signup date (tenure)
    previous: dict[str, tuple[int, Tier]]  # tickets raised and tier, if stored
    bought: dict[str, list[features.Purchase]]


async def _value_inputs(session: AsyncSession, ids: list[str]) -> _ValueInputs:
    """Plain columns, not entities: of a profile, its signup date alone (not its
    personal data); of the stored features, what a refresh keeps or compares."""
    signed_up = dict((await session.execute(
        select(CustomerRow.customer_id, CustomerRow.signup_date)
        .where(CustomerRow.customer_id.in_(ids)))).all())
    previous = {customer_id: (tickets, Tier(tier)) for customer_id, tickets, tier in (
        await session.execute(
            select(CustomerFeaturesRow.customer_id, CustomerFeaturesRow.tickets_raised,
                   CustomerFeaturesRow.tier)
            .where(CustomerFeaturesRow.customer_id.in_(ids)))).all()}
    bought: dict[str, list[features.Purchase]] = {}
    for customer_id, amount, at in (await session.execute(
            select(PurchaseRow.customer_id, PurchaseRow.amount, PurchaseRow.purchased_at)
            .where(PurchaseRow.customer_id.in_(ids)))).all():
        bought.setdefault(customer_id, []).append(features.Purchase(float(amount), at))
    return _ValueInputs(signed_up, previous, bought)


def _valued_row(customer_id: str, raw: ValueFeatures, tier: Tier,
                now: datetime) -> dict[str, Any]:
    """A customer's parameters of `_features_upsert`. Named, not `asdict`: its deep copy
    of each value was a quarter of a population run's CPU."""
    return {"valued_customer_id": customer_id,
            **{f"valued_{name}": getattr(raw, name) for name in _STORED_VALUES},
            "valued_tier": str(tier), "valued_computed_at": now}



def _as_customer(row: Row[Any]) -> Customer:
    """A customer from a row of `_customers()` (no tier: no features row yet)."""
    if row.tier is None:
        return Customer(row.customer_id, to_profile(row), NO_FEATURES, Tier.POTENTIAL)
    return Customer(row.customer_id, to_profile(row), to_features(row), Tier(row.tier))
