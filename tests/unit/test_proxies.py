"""Proxy detection in rule analysis, on generated customer bases where the truth is known."""

import random
from datetime import date, timedelta
from typing import Any

import pytest

from services.core import groups
from services.segmenter import context, proxies, rules_file
from services.segmenter.analysis import analyse
from services.segmenter.profiles import (
    Customer,
    CustomerProfile,
    CustomerType,
    Tier,
    ValueFeatures,
)

TODAY = date(2026, 11, 23)
RULES = """
version: v1
default_segment: general
rules:
  - name: frisian-speakers
    segment: regional
    when: customer.language == "fy"
  - name: belgians
    segment: south
    when: customer.country == "BE"
  - name: women
    segment: w
    when: customer.gender == "female"
"""


def base(size: int, *, proxy: bool, seed: int = 7) -> list[tuple[str, dict[str, Any]]]:
    """Customers of every age; with `proxy`, nine in ten aged 65 or more speak Frisian
    and few others do; without, language has nothing to do with age."""
    rng = random.Random(seed)
    contexts = []
    for n in range(size):
        age = rng.randint(18, 85)
        if proxy:
            language = "fy" if rng.random() < (0.9 if age >= 65 else 0.05) else "nl"
        else:
            language = rng.choice(("fy", "nl", "nl"))
        profile = CustomerProfile(
            f"c{n}", CustomerType.INDIVIDUAL,
            birth_date=TODAY - timedelta(days=365 * age + 30),
            gender=rng.choice(("female", "male")), country=rng.choice(("NL", "BE", "NL")),
            language=language, socio_economic_band=rng.choice(groups.SOCIO_ECONOMIC_BANDS))
        who = Customer(f"c{n}", profile, ValueFeatures(), Tier.EXISTING)
        contexts.append((f"c{n}", context.build(who, None, today=TODAY)))
    return contexts


class TestKnownProxy:
    def test_a_language_that_stands_in_for_age_is_flagged_with_its_strength(self) -> None:
        report = analyse(rules_file.parse(RULES, source="r.yaml"), base(2000, proxy=True))
        found = report.proxy_detection.proxies
        assert [(p.rule, p.attribute) for p in found] == [("frisian-speakers", "age_band")]
        proxy = found[0]
        assert proxy.cramers_v >= 0.5
        assert proxy.band == "65_plus"
        assert proxy.share_of_matches > 0.8 > 0.35 > proxy.share_of_customers
        assert proxy.customers == 2000

    def test_a_rule_reading_a_protected_attribute_by_name_is_flagged_as_such_not_as_proxy(
            self) -> None:
        report = analyse(rules_file.parse(RULES, source="r.yaml"), base(500, proxy=True))
        assert report.protected_rules == ("women",)
        assert "women" not in report.proxy_detection.rules_checked


class TestNoProxy:
    def test_rules_independent_of_every_protected_attribute_are_not_flagged(self) -> None:
        report = analyse(rules_file.parse(RULES, source="r.yaml"), base(2000, proxy=False))
        assert report.proxy_detection.rules_checked == ("frisian-speakers", "belgians")
        assert report.proxy_detection.proxies == ()

    def test_a_rule_matching_fewer_customers_than_the_minimum_is_not_flagged(self) -> None:
        contexts = base(300, proxy=True)  # about 90 Frisian speakers
        strict = analyse(rules_file.parse(RULES, source="r.yaml"), contexts,
                         proxy_policy=proxies.Policy(minimum_customers=150))
        loose = analyse(rules_file.parse(RULES, source="r.yaml"), contexts,
                        proxy_policy=proxies.Policy(minimum_customers=30))
        assert strict.proxy_detection.proxies == ()
        assert [p.rule for p in loose.proxy_detection.proxies] == ["frisian-speakers"]

    def test_a_rule_matching_all_but_fewer_customers_than_the_minimum_is_not_flagged(
            self) -> None:
        """The rest is a group too: a rule leaving out only a handful would name them.
        Here every woman and 40 of 50 men match (Cramér's V 0.33), the 10 left out all
        men."""
        def detected(minimum: int) -> tuple[proxies.Proxy, ...]:
            detection = proxies.ProxyDetection(["r"], ["gender"],
                                               proxies.Policy(minimum_customers=minimum))
            for n in range(100):
                female = n < 50
                detection.add({"gender": "female" if female else "male"},
                              ["r"] if female or n < 90 else [])
            return detection.detection().proxies

        assert [(p.matched, p.customers, p.cramers_v) for p in detected(5)] == [
            (90, 100, 0.333)]
        assert detected(30) == ()


class TestThreshold:
    def test_a_rule_at_the_threshold_is_flagged(self) -> None:
        """At or above it: a rule whose matches are told by the band alone (V 1.0) is
        flagged under the highest threshold there is."""
        detection = proxies.ProxyDetection(["r"], ["gender"], proxies.Policy(
            threshold=1.0, minimum_customers=1))
        for n in range(40):
            female = n % 2 == 0
            detection.add({"gender": "female" if female else "male"}, ["r"] if female else [])
        [proxy] = detection.detection().proxies
        assert (proxy.cramers_v, proxy.band, proxy.share_of_matches) == (1.0, "female", 1.0)


class TestCheckedAttributes:
    @pytest.mark.parametrize("listed", ["[]", "[customer.gender]"])
    def test_a_rule_file_listing_fewer_protected_attributes_still_has_every_one_checked(
            self, listed: str) -> None:
        """`protected_attributes` adds to the defaults, never takes one away: a list
        without age (or an empty one) switched proxy detection off for it, and the
        Frisian speakers standing in for the over-65s went unflagged."""
        text = RULES.replace("rules:", f"protected_attributes: {listed}\nrules:", 1)
        report = analyse(rules_file.parse(text, source="r.yaml"), base(2000, proxy=True))
        assert report.proxy_detection.attributes == groups.ATTRIBUTES
        assert [(p.rule, p.attribute) for p in report.proxy_detection.proxies] == [
            ("frisian-speakers", "age_band")]
        assert report.protected_rules == ("women",)

    def test_customers_of_unknown_band_are_left_out(self) -> None:
        detection = proxies.ProxyDetection(["r"], ["gender"], proxies.Policy(minimum_customers=1))
        detection.add({"gender": "unknown"}, ["r"])
        detection.add({"gender": "female"}, ["r"])
        detection.add({"gender": "male"}, [])
        assert detection.detection().proxies[0].customers == 2


class TestCramersV:
    @pytest.mark.parametrize(("table", "expected"), [
        ([[50, 0], [0, 50]], 1.0),
        ([[25, 25], [25, 25]], 0.0),
        ([[0, 0], [10, 30]], 0.0),
        ([[30, 10, 0], [10, 30, 40]], 0.661),  # chi2 52.5 over 120,
    ])
    def test_known_tables(self, table: list[list[int]], expected: float) -> None:
        assert proxies.cramers_v(table) == pytest.approx(expected, abs=0.001)
