"""The segmenter's use cases, each written once.

The edges only translate: the Kafka stage, the HTTP APIs, the periodic tier job and the
`routing` command call these with what the bootstrap (services/segmenter/bootstrap.py)
wired, and map the verdicts they return to records, status codes or lines of output.
Dependencies come in as arguments typed by protocol, so the unit tests wire recording
fakes through the same bootstrap.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from services.core import tickets
from services.segmenter import analysis, context, customer_events, features, proxies, rules
from services.segmenter.imports import ImportReport, OnChunk
from services.segmenter.profiles import Customer
from services.segmenter.rows import CustomerRecord, PurchaseRecord, RowError
from services.segmenter.store import TierChange

if TYPE_CHECKING:
    from services.segmenter.erasure import Erasure
    from services.segmenter.models import CustomerRow

Publisher = customer_events.Publisher
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


class Customers(Protocol):
    """The customer store as the use cases see it (services/segmenter/store.py)."""

    cutoffs: features.Cutoffs

    async def customer(self, customer_id: str, *, now: datetime) -> Customer: ...

    def all_customers(self, *, now: datetime) -> AsyncIterator[Customer]: ...

    async def profile_row(self, customer_id: str) -> CustomerRow | None: ...

    async def save_customer(self, fields: dict[str, Any]) -> bool: ...

    async def record_purchase(self, customer_id: str, amount: float, currency: str,
                              purchased_at: datetime, *,
                              now: datetime) -> TierChange | None: ...

    async def refresh_features(self, customer_ids: Iterable[str], *,
                               now: datetime) -> list[TierChange]: ...

    async def recompute_population(self, *, now: datetime) -> list[TierChange]: ...

    async def tier_sizes(self) -> dict[str, int]: ...

    async def import_customers(
            self, rows: AsyncIterator[CustomerRecord | RowError]) -> ImportReport: ...

    async def import_purchases(self, rows: AsyncIterator[PurchaseRecord | RowError], *,
                               on_chunk: OnChunk) -> ImportReport: ...

    async def erase(self, customer_id: str) -> Erasure: ...


# --- Segmenting --------------------------------------------------------------------------


@dataclass(frozen=True)
class Segmented:
    """A customer's segment, with what the rules read to decide it."""

    customer: Customer
    evaluation: dict[str, Any]
    decision: rules.Decision


def segment(customer: Customer, ticket: tickets.Ticket | None, rule_set: rules.RuleSet, *,
            now: datetime) -> Segmented:
    """The segment of this customer's ticket (None: a ticket with no fields of its own)."""
    evaluation = context.build(customer, ticket, today=now.date())
    return Segmented(customer, evaluation, rule_set.decide(evaluation))


async def explain(customers: Customers, rule_set: rules.RuleSet, customer_id: str, *,
                  now: datetime) -> Segmented:
    """The segment a ticket from this customer would get now; unknown customers too."""
    customer = await customers.customer(customer_id, now=now)
    return segment(customer, None, rule_set, now=now)


async def analyse(customers: Customers, candidate: rules.RuleSet, *,
                  live: rules.RuleSet | None = None, now: datetime,
                  proxy_policy: proxies.Policy | None = None) -> analysis.Report:
    """A rule set (or a candidate against the live one) over the whole customer base,
    each customer read as `segment` reads them; rules that stand in for a protected
    attribute found by `proxy_policy`."""
    running = analysis.Analysis(candidate, live, proxy_policy=proxy_policy)
    async for customer in customers.all_customers(now=now):
        running.add(customer.customer_id, context.build(customer, None, today=now.date()))
    return running.report()


# --- Tiers -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Recomputed:
    tier_changes: tuple[TierChange, ...]
    sizes: dict[str, int]
    cutoffs: features.Cutoffs


async def recompute_tiers(customers: Customers, publisher: Publisher, *,
                          now: datetime) -> Recomputed:
    """Every customer's values, then the cutoffs (by the store's tier policy, the
    settings'), then every tier; each tier change and the new cutoffs are published so
    every running segmenter refreshes its cache and cutoffs."""
    changes = await customers.recompute_population(now=now)
    await customer_events.publish_recomputed(publisher, changes)
    return Recomputed(tuple(changes), await customers.tier_sizes(), customers.cutoffs)


# --- Customers and purchases -------------------------------------------------------------


async def save_customer(customers: Customers, publisher: Publisher, customer_id: str,
                        profile: dict[str, Any], *, now: datetime) -> bool:
    """Create or replace a profile; True when the customer is new."""
    created = await customers.save_customer({"customer_id": customer_id, **profile})
    changes = await customers.refresh_features([customer_id], now=now)
    await customer_events.publish_changes(publisher, [customer_id], changes)
    return created


@dataclass(frozen=True)
class Purchased:
    customer: Customer  # as it is after the purchase
    tier_change: TierChange | None


async def record_purchase(customers: Customers, publisher: Publisher, customer_id: str, *,
                          amount: float, currency: str, purchased_at: datetime | None,
                          now: datetime) -> Purchased | None:
    """Record a purchase and re-score its customer; None: no such customer."""
    if await customers.profile_row(customer_id) is None:
        return None
    change = await customers.record_purchase(customer_id, amount, currency,
                                             purchased_at or now, now=now)
    await customer_events.publish_changes(publisher, [customer_id],
                                          [change] if change else [])
    return Purchased(await customers.customer(customer_id, now=now), change)


async def erase_customer(customers: Customers, publisher: Publisher,
                         customer_id: str) -> Erasure:
    """Erase the customer everywhere in the store; caches are told when there was one."""
    erased = await customers.erase(customer_id)
    if erased.found:
        await customer_events.publish_changes(publisher, [customer_id])
    return erased


# --- Bulk import -------------------------------------------------------------------------


@dataclass(frozen=True)
class Imported:
    report: ImportReport
    recomputed: Recomputed | None  # None: no row was kept, nothing to recompute


# How a use case runs a pass over the whole customer base that a change sets off: in the
# service's report turns (report_turns.ReportTurns.run_in_turn).
InTurn = Callable[[Callable[[], Awaitable[Recomputed]]], Awaitable[Recomputed]]


async def import_customers(
        customers: Customers, publisher: Publisher,
        rows: AsyncIterator[CustomerRecord | RowError], *, in_turn: InTurn,
        clock: Clock = utc_now) -> Imported:
    """Upsert customers in chunks, then run the tier recompute over the new base (which
    is what announces it to the running segmenters), `in_turn`: a pass over the whole
    base waits as the service's other reports do, and an import made while one waits
    may share it (it starts later, so it covers both)."""
    report = await customers.import_customers(rows)
    if not report.rows_imported:
        return Imported(report, None)
    return Imported(report, await in_turn(
        lambda: recompute_tiers(customers, publisher, now=clock())))


async def import_purchases(customers: Customers, publisher: Publisher,
                           rows: AsyncIterator[PurchaseRecord | RowError], *,
                           clock: Clock = utc_now) -> ImportReport:
    """Record purchases in chunks; each chunk's customers are re-scored at once."""

    async def refresh(customer_ids: list[str]) -> None:
        changes = await customers.refresh_features(customer_ids, now=clock())
        await customer_events.publish_changes(publisher, customer_ids, changes)

    return await customers.import_purchases(rows, on_chunk=refresh)
