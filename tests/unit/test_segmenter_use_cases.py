"""The segmenter's use cases (services/segmenter/service.py), run with recording fakes
wired by the service's own bootstrap: no broker, no database, no sockets."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from prometheus_client import REGISTRY
from sqlalchemy.ext.asyncio import create_async_engine

from services.core import db, faults, http, tickets
from services.core.settings import Settings
from services.segmenter import admin_api, bootstrap, customer_events, features, rows, service
from services.segmenter.imports import ImportReport
from services.segmenter.profiles import (
    NO_FEATURES,
    Customer,
    CustomerProfile,
    CustomerType,
    Tier,
)
from services.segmenter.rows import CustomerRecord, RowError
from services.segmenter.store import TierChange
from tests.unit.segmenter_fakes import RECOMPUTED_CUTOFFS, wired

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)


def customer(customer_id: str, kind: CustomerType | None = CustomerType.INDIVIDUAL,
             tier: Tier = Tier.EXISTING) -> Customer:
    profile = CustomerProfile(customer_id, kind) if kind is not None else None
    return Customer(customer_id, profile, NO_FEATURES, tier)


def ticket_of(customer_id: str) -> tickets.Ticket:
    return tickets.Ticket(ticket_id="t-1", customer_id=customer_id, subject="help",
                          body="", channel="email", received_at=NOW)


async def no_rows() -> AsyncIterator[CustomerRecord | RowError]:
    for row in ():
        yield row


class TestBootstrap:
    def test_the_rule_set_comes_from_the_settings_rule_file(self) -> None:
        segmenter, _, _ = wired()
        assert segmenter.rules.path == Settings().segment_rules_file.resolve()
        assert segmenter.rules.current.rules

    async def test_the_customer_store_gets_the_settings_tier_policy(self) -> None:
        settings = Settings(most_valuable_share=0.5, most_growable_share=0.2,
                            min_growth_ratio=0.1)
        engine = create_async_engine("sqlite+aiosqlite://")  # never connected
        try:
            store = bootstrap.customer_store(settings, db.sessions(engine))
        finally:
            await engine.dispose()
        assert store.policy == features.TierPolicy(0.5, 0.2, 0.1)
        assert store.policy != features.TierPolicy()

    def test_each_fault_is_at_0_customer_events_passed_over_from_the_start(self) -> None:
        """Before the cache follower passes any record over: a series born at its first,
        at 1, is no increase to Prometheus, and RoutingCustomerEventsPassedOver would
        miss it. The counter is process-wide: what earlier tests passed over is cleared
        first, so that the series are the start's own."""
        customer_events.PASSED_OVER.clear()
        wired()
        assert {fault.value: REGISTRY.get_sample_value(
            "routing_customer_events_passed_over_total", {"fault": fault.value})
            for fault in faults.Fault} == {"outage": 0.0, "transient": 0.0, "record": 0.0}


class TestSegment:
    def test_the_first_rule_that_holds_decides(self) -> None:
        segmenter, _, _ = wired()
        segmented = service.segment(customer("gov", CustomerType.GOVERNMENT), ticket_of("gov"),
                                    segmenter.rules.current, now=NOW)
        assert (segmented.decision.segment, segmented.decision.rule) == (
            "government", "public-sector")
        assert segmented.evaluation["ticket"]["channel"] == "email"

    async def test_explaining_an_unknown_customer_answers_too(self) -> None:
        segmenter, store, _ = wired()
        segmented = await service.explain(store, segmenter.rules.current, "nobody", now=NOW)
        assert segmented.customer.profile is None
        assert segmented.decision.segment == "potential"  # unknown: tier potential
        assert segmented.evaluation["ticket"]["channel"] is None
        assert ("customer", "nobody") in store.calls


class TestAnalyse:
    async def test_every_customer_of_the_base_is_read_as_segment_reads_them(self) -> None:
        segmenter, store, _ = wired(customer("gov", CustomerType.GOVERNMENT),
                                    customer("org", CustomerType.ORGANISATION),
                                    customer("top", tier=Tier.MOST_VALUABLE))
        rule_set = segmenter.rules.current
        report = await service.analyse(store, rule_set, now=NOW)
        assert report.customers == 3
        expected = {service.segment(c, None, rule_set, now=NOW).decision.segment
                    for c in store.known.values()}
        assert {name for name, size in report.segment_sizes.items() if size} == expected
        assert expected == {"government", "business", "key_accounts"}


class TestRecomputeTiers:
    async def test_every_tier_change_and_the_new_cutoffs_are_published(self) -> None:
        segmenter, store, publisher = wired(customer("c1"))
        store.recompute_changes = [TierChange("c1", Tier.EXISTING, Tier.MOST_VALUABLE)]
        recomputed = await service.recompute_tiers(segmenter.customers, segmenter.publisher,
                                                   now=NOW)
        assert publisher.types() == [customer_events.TIER_CHANGED,
                                     customer_events.POPULATION_RECOMPUTED]
        changed = publisher.published[0]
        assert changed.subject == "c1"
        assert (changed.data["previous"], changed.data["current"]) == (
            "existing", "most_valuable")
        assert recomputed.cutoffs == RECOMPUTED_CUTOFFS
        assert recomputed.sizes == {"existing": 1}
        assert len(recomputed.tier_changes) == 1

    async def test_without_changes_the_recompute_is_still_announced(self) -> None:
        segmenter, _, publisher = wired()
        await service.recompute_tiers(segmenter.customers, segmenter.publisher, now=NOW)
        assert publisher.types() == [customer_events.POPULATION_RECOMPUTED]

    async def test_an_absent_broker_does_not_undo_the_recompute(self) -> None:
        segmenter, store, publisher = wired()
        publisher.fail = True
        recomputed = await service.recompute_tiers(segmenter.customers, segmenter.publisher,
                                                   now=NOW)
        assert recomputed.cutoffs == RECOMPUTED_CUTOFFS == store.cutoffs
        assert publisher.published == []


async def at_once(run: Callable[[], Awaitable[service.Recomputed]]) -> service.Recomputed:
    """A turn that is free (the turns themselves: tests/unit/test_report_turns.py)."""
    return await run()


class TestImportCustomers:
    async def test_kept_rows_run_the_recompute_the_import_announces(self) -> None:
        segmenter, store, publisher = wired()
        store.import_report = ImportReport("customers", 3, 2, 1, ())
        imported = await service.import_customers(segmenter.customers, segmenter.publisher,
                                                  no_rows(), clock=lambda: NOW,
                                                  in_turn=at_once)
        assert [call[0] for call in store.calls] == ["import_customers",
                                                     "recompute_population"]
        assert imported.recomputed is not None
        assert imported.recomputed.cutoffs == RECOMPUTED_CUTOFFS
        assert publisher.types() == [customer_events.POPULATION_RECOMPUTED]

    async def test_nothing_kept_nothing_recomputed_nor_announced(self) -> None:
        segmenter, store, publisher = wired()
        store.import_report = ImportReport("customers", 2, 0, 2, ())
        imported = await service.import_customers(segmenter.customers, segmenter.publisher,
                                                  no_rows(), clock=lambda: NOW,
                                                  in_turn=at_once)
        assert imported.recomputed is None
        assert ("recompute_population",) not in store.calls
        assert publisher.published == []


class TestImportPurchases:
    async def test_each_chunk_is_rescored_and_announced(self) -> None:
        segmenter, store, publisher = wired()
        store.import_chunks = [["c1", "c2"], ["c3"]]
        await service.import_purchases(segmenter.customers, segmenter.publisher,
                                       no_rows(), clock=lambda: NOW)
        assert ("refresh_features", ["c1", "c2"]) in store.calls
        assert [event.subject for event in publisher.published] == ["c1", "c2", "c3"]
        assert set(publisher.types()) == {customer_events.CHANGED}


class TestCustomersAndPurchases:
    async def test_a_saved_profile_is_rescored_and_announced(self) -> None:
        segmenter, store, publisher = wired()
        created = await service.save_customer(segmenter.customers, segmenter.publisher, "c9",
                                              {"customer_type": "individual"}, now=NOW)
        assert created is True
        assert ("refresh_features", ["c9"]) in store.calls
        assert publisher.types() == [customer_events.CHANGED]

    async def test_a_purchase_of_an_unknown_customer_is_refused_and_nothing_recorded(
            self) -> None:
        segmenter, store, publisher = wired()
        purchased = await service.record_purchase(
            segmenter.customers, segmenter.publisher, "nobody", amount=10.0,
            currency="EUR", purchased_at=None, now=NOW)
        assert purchased is None
        assert not any(call[0] == "record_purchase" for call in store.calls)
        assert publisher.published == []

    async def test_a_purchase_that_changes_the_tier_says_so(self) -> None:
        segmenter, store, publisher = wired(customer("c1"))
        store.purchase_change = TierChange("c1", Tier.EXISTING, Tier.MOST_GROWABLE)
        purchased = await service.record_purchase(
            segmenter.customers, segmenter.publisher, "c1", amount=10.0, currency="EUR",
            purchased_at=None, now=NOW)
        assert purchased is not None and purchased.tier_change == store.purchase_change
        assert ("record_purchase", "c1", 10.0, "EUR", NOW) in store.calls  # default: now
        assert publisher.types() == [customer_events.CHANGED, customer_events.TIER_CHANGED]

    async def test_a_purchase_dated_in_the_future_is_refused_naming_the_field(
            self) -> None:
        """Counted as recent spend until its date came, it would raise the tier for years."""
        segmenter, store, publisher = wired(customer("c1"))
        purchase = admin_api.PurchaseIn.model_validate(
            {"amount": "10", "currency": "EUR", "purchased_at": "9999-01-01T00:00:00Z"})
        with pytest.raises(http.InvalidField) as refused:
            await admin_api.record_purchase("c1", purchase, segmenter)
        assert refused.value.field == "body.purchased_at"
        assert refused.value.problem.startswith("in the future; accepted: a moment by now")
        assert not any(call[0] == "record_purchase" for call in store.calls)
        assert publisher.published == []

    async def test_a_purchase_dated_by_a_clock_a_little_ahead_is_recorded(self) -> None:
        segmenter, store, _ = wired(customer("c1"))
        ahead = datetime.now(UTC) + rows.PURCHASE_CLOCK_SKEW - timedelta(minutes=1)
        purchase = admin_api.PurchaseIn(amount=Decimal(10), currency="EUR",
                                        purchased_at=ahead)
        await admin_api.record_purchase("c1", purchase, segmenter)
        assert ("record_purchase", "c1", 10.0, "EUR", ahead) in store.calls

    @pytest.mark.parametrize(("known", "announced"), [(True, 1), (False, 0)])
    async def test_an_erasure_is_announced_only_when_something_was_erased(
            self, known: bool, announced: int) -> None:
        segmenter, _, publisher = wired(*([customer("c1")] if known else []))
        erased = await service.erase_customer(segmenter.customers, segmenter.publisher, "c1")
        assert erased.found is known
        assert len(publisher.published) == announced
