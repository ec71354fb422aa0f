"""Recording fakes of the segmenter's adapters, for unit tests of its use cases: wired by
the same bootstrap as the real ones (services/segmenter/bootstrap.py), no sockets."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from services.core import envelope, kafka
from services.core.settings import Settings
from services.segmenter import bootstrap, features
from services.segmenter.erasure import Erasure
from services.segmenter.imports import ImportReport, OnChunk
from services.segmenter.models import CustomerRow
from services.segmenter.profiles import NO_FEATURES, Customer, Tier
from services.segmenter.rows import CustomerRecord, PurchaseRecord, RowError
from services.segmenter.store import TierChange

RECOMPUTED_CUTOFFS = replace(features.DEFAULT_CUTOFFS, most_valuable_from=123.0)


class FakePublisher:
    """Records what was published; `fail` makes it refuse like an absent broker."""

    def __init__(self) -> None:
        self.published: list[envelope.Event] = []
        self.fail = False

    async def publish(self, outputs: Sequence[kafka.Publishable]) -> None:
        if self.fail:
            raise kafka.PublishFailed("no broker in a unit test")
        for output in outputs:
            assert isinstance(output, kafka.Output)
            self.published.append(output.event)

    def types(self) -> list[str]:
        return [event.type for event in self.published]


class FakeCustomers:
    """A customer store in memory that records the calls the use cases make and answers
    what the test set up."""

    def __init__(self, *customers: Customer) -> None:
        self.known = {customer.customer_id: customer for customer in customers}
        self.cutoffs = features.DEFAULT_CUTOFFS
        self.calls: list[tuple[Any, ...]] = []
        self.recompute_changes: list[TierChange] = []
        self.purchase_change: TierChange | None = None
        self.import_report = ImportReport("customers", 0, 0, 0, ())
        self.import_chunks: list[list[str]] = []  # what on_chunk is called with

    async def customer(self, customer_id: str, *, now: datetime) -> Customer:
        self.calls.append(("customer", customer_id))
        return self.known.get(customer_id,
                              Customer(customer_id, None, NO_FEATURES, Tier.POTENTIAL))

    async def all_customers(self, *, now: datetime) -> AsyncIterator[Customer]:
        self.calls.append(("all_customers",))
        for customer in self.known.values():
            yield customer

    async def profile_row(self, customer_id: str) -> CustomerRow | None:
        found = self.known.get(customer_id)
        if found is None or found.profile is None:
            return None
        return CustomerRow(customer_id=customer_id,
                           customer_type=str(found.profile.customer_type))

    async def save_customer(self, fields: dict[str, Any]) -> bool:
        self.calls.append(("save_customer", fields["customer_id"]))
        return fields["customer_id"] not in self.known

    async def record_purchase(self, customer_id: str, amount: float, currency: str,
                              purchased_at: datetime, *, now: datetime) -> TierChange | None:
        self.calls.append(("record_purchase", customer_id, amount, currency, purchased_at))
        return self.purchase_change

    async def refresh_features(self, customer_ids: Iterable[str], *,
                               now: datetime) -> list[TierChange]:
        self.calls.append(("refresh_features", sorted(customer_ids)))
        return []

    async def recompute_population(self, *, now: datetime) -> list[TierChange]:
        self.calls.append(("recompute_population",))
        self.cutoffs = RECOMPUTED_CUTOFFS
        return list(self.recompute_changes)

    async def tier_sizes(self) -> dict[str, int]:
        sizes: dict[str, int] = {}
        for customer in self.known.values():
            sizes[str(customer.tier)] = sizes.get(str(customer.tier), 0) + 1
        return sizes

    async def import_customers(
            self, rows: AsyncIterator[CustomerRecord | RowError]) -> ImportReport:
        self.calls.append(("import_customers",))
        return self.import_report

    async def import_purchases(self, rows: AsyncIterator[PurchaseRecord | RowError], *,
                               on_chunk: OnChunk) -> ImportReport:
        self.calls.append(("import_purchases",))
        for chunk in self.import_chunks:
            done = on_chunk(chunk)
            if done is not None:
                await done
        return self.import_report

    async def erase(self, customer_id: str) -> Erasure:
        self.calls.append(("erase", customer_id))
        return Erasure(customer_id, customer=customer_id in self.known, purchases=0,
                       tickets=0, idempotency_keys=0)


def wired(*customers: Customer, settings: Settings | None = None) -> tuple[
        bootstrap.Segmenter, FakeCustomers, FakePublisher]:
    """The segmenter's context as the service builds it, with recording fakes."""
    store, publisher = FakeCustomers(*customers), FakePublisher()
    segmenter = bootstrap.wire(settings or Settings(), customers=store, publisher=publisher)
    return segmenter, store, publisher
