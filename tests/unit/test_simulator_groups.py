"""Parity groups in a simulation: each ticket's customer banded as the service parity
bands it, and groups too small to be anonymous pooled."""

from __future__ import annotations

from datetime import UTC, date, datetime

from services.core import groups
from services.segmenter.profiles import (
    Customer,
    CustomerProfile,
    CustomerType,
    Tier,
    ValueFeatures,
)
from services.simulator import api, engine, history

AT = datetime(2026, 11, 2, 9, tzinfo=UTC)


def ticket(number: int, groups: dict[str, str]) -> engine.HistoricTicket:
    actual = engine.Served(f"t{number}", "care", "standard", AT, None, None, None, False,
                           groups=groups)
    return engine.HistoricTicket(f"t{number}", AT, "standard", "potential", {}, None,
                                 actual, groups)


class TestSmallGroupsPooled:
    def test_a_group_under_the_minimum_is_pooled_as_suppressed(self) -> None:
        tickets = [ticket(n, {"gender": "female"}) for n in range(3)] + [
            ticket(9, {"gender": "non_binary"})]
        pooled = history.pool_small_groups(tickets, 2)
        assert [t.groups["gender"] for t in pooled] == ["female"] * 3 + ["suppressed"]
        assert [t.actual.groups["gender"] for t in pooled] == ["female"] * 3 + ["suppressed"]

    def test_nothing_changes_when_every_group_is_large_enough(self) -> None:
        tickets = [ticket(n, {"gender": "female"}) for n in range(3)]
        assert history.pool_small_groups(tickets, 3) == tickets


class TestParityGroupsOfACustomer:
    PROFILE = CustomerProfile("c1", CustomerType.INDIVIDUAL, birth_date=date(1950, 1, 1),
                              gender="female", socio_economic_band="low")

    def test_bands_never_values(self) -> None:
        customer = Customer("c1", self.PROFILE, ValueFeatures(), Tier.POTENTIAL)
        assert api.parity_groups(customer, attributes=groups.ATTRIBUTES) == {
            "age_band": "65_plus", "gender": "female", "socio_economic_band": "low"}

    def test_only_the_attributes_the_service_parity_measures(self) -> None:
        """PARITY_ATTRIBUTES narrowed (no gender): no gender group."""
        customer = Customer("c1", self.PROFILE, ValueFeatures(), Tier.POTENTIAL)
        assert api.parity_groups(customer, attributes=("age_band", "socio_economic_band")) \
            == {"age_band": "65_plus", "socio_economic_band": "low"}

    def test_an_unknown_customer_is_unknown_in_every_attribute(self) -> None:
        customer = Customer("c2", None, ValueFeatures(), Tier.POTENTIAL)
        assert api.parity_groups(customer, attributes=("gender",)) == {"gender": "unknown"}
        assert set(api.parity_groups(customer, attributes=groups.ATTRIBUTES).values()) \
            == {"unknown"}
