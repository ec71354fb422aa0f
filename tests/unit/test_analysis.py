import dataclasses
import json
from datetime import date
from typing import Any

from services.segmenter import context, rules_file
from services.segmenter.analysis import Analysis, Move, analyse
from services.segmenter.profiles import (
    Customer,
    CustomerProfile,
    CustomerType,
    Tier,
    ValueFeatures,
)
from services.segmenter.rules import WITHHELD, RuleSet

TODAY = date(2026, 11, 23)

CANDIDATE = """
version: v2
default_segment: general
rules:
  - name: organisations
    segment: business
    when: customer.type == "organisation"
  - name: big-spenders
    segment: vip
    when: features.total_value >= 1000.0
  - name: dutch
    segment: local
    when: customer.country == "NL"
"""


def rule_set(text: str, source: str = "candidate.yaml") -> RuleSet:
    return rules_file.parse(text, source=source)


def customer(customer_id: str, *, kind: CustomerType = CustomerType.INDIVIDUAL,
             country: str | None = "DE", value: float = 0.0, gender: str | None = None,
             attributes: dict[str, Any] | None = None,
             known: bool = True) -> tuple[str, dict[str, Any]]:
    profile = CustomerProfile(customer_id, kind, country=country, gender=gender,
                              attributes=attributes or {}) if known else None
    who = Customer(customer_id, profile, ValueFeatures(total_value=value), Tier.EXISTING)
    return customer_id, context.build(who, None, today=TODAY)


def rule(report: Any, name: str) -> Any:
    return next(r for r in report.rules if r.name == name)


class TestSegmentSizes:
    def test_first_match_decides_the_segment(self) -> None:
        report = analyse(rule_set(CANDIDATE), [
            customer("c1", kind=CustomerType.ORGANISATION, value=5000.0),  # business, not vip
            customer("c2", value=5000.0, country="NL"),  # vip, not local
            customer("c3", country="NL"),
            customer("c4"),
        ])
        assert report.customers == 4
        assert report.segment_sizes == {"business": 1, "vip": 1, "local": 1, "general": 1}
        assert [(r.name, r.first_matches, r.all_matches) for r in report.rules] == [
            ("organisations", 1, 1), ("big-spenders", 1, 2), ("dutch", 1, 2)]

    def test_agrees_with_the_rule_sets_own_decision(self) -> None:
        candidate = rule_set(CANDIDATE)
        base = [customer("a", value=2000.0, country="NL"), customer("b", country="NL"),
                customer("c", kind=CustomerType.GOVERNMENT)]
        report = analyse(candidate, base)
        decided: dict[str, int] = dict.fromkeys(candidate.segments, 0)
        for _, ctx in base:
            decided[candidate.decide(ctx).segment] += 1
        assert report.segment_sizes == decided

    def test_segments_nobody_falls_into_are_listed_as_empty(self) -> None:
        report = analyse(rule_set(CANDIDATE), [customer("c1")])
        assert report.segment_sizes == {"business": 0, "vip": 0, "local": 0, "general": 1}

    def test_versions_are_reported_and_the_report_is_json(self) -> None:
        candidate, live = rule_set(CANDIDATE), rule_set(CANDIDATE.replace("v2", "v1"))
        report = analyse(candidate, [customer("c1")], live=live)
        assert report.rules_version.startswith("v2+")
        assert report.live_version is not None and report.live_version.startswith("v1+")
        assert json.loads(json.dumps(dataclasses.asdict(report)))["customers"] == 1


class TestDefaultOnly:
    def test_customers_no_rule_claims_are_counted_and_sampled(self) -> None:
        report = analyse(rule_set(CANDIDATE), [
            customer("unknown", known=False), customer("german"), customer("dutch", country="NL")])
        assert report.default_only.count == 2
        assert report.default_only.sample_customer_ids == ("unknown", "german")

    def test_sample_keeps_at_most_ten(self) -> None:
        analysis = Analysis(rule_set(CANDIDATE))
        for n in range(25):
            analysis.add(*customer(f"c{n}"))
        report = analysis.report()
        assert report.default_only.count == 25
        assert report.default_only.sample_customer_ids == tuple(f"c{n}" for n in range(10))


class TestNeverMatching:
    def test_a_rule_that_holds_for_nobody_is_flagged(self) -> None:
        report = analyse(rule_set(CANDIDATE), [customer("c1", country="NL")])
        assert [r.name for r in report.rules if r.never_matches] == [
            "organisations", "big-spenders"]
        assert not rule(report, "dutch").never_matches


class TestShadowed:
    SHADOWING = """
version: v1
default_segment: general
rules:
  - name: anyone-dutch
    segment: local
    when: customer.country == "NL"
  - name: dutch-organisations
    segment: business
    when: customer.country == "NL" && customer.type == "organisation"
"""

    def test_a_rule_whose_matches_all_go_to_an_earlier_rule_is_shadowed(self) -> None:
        report = analyse(rule_set(self.SHADOWING), [
            customer("c1", country="NL", kind=CustomerType.ORGANISATION), customer("c2")])
        hidden = rule(report, "dutch-organisations")
        assert (hidden.shadowed, hidden.never_matches) == (True, False)
        assert (hidden.first_matches, hidden.all_matches) == (0, 1)
        assert hidden.shadowed_by == ("anyone-dutch",)
        assert not rule(report, "anyone-dutch").shadowed

    def test_a_rule_that_never_holds_is_not_shadowed(self) -> None:
        report = analyse(rule_set(self.SHADOWING), [customer("c1", country="NL")])
        assert not rule(report, "dutch-organisations").shadowed

    def test_partly_overlapping_rule_names_who_took_its_matches(self) -> None:
        report = analyse(rule_set(CANDIDATE), [
            customer("c1", kind=CustomerType.ORGANISATION, value=5000.0, country="NL"),
            customer("c2", value=5000.0, country="NL"),
            customer("c3", country="NL")])
        dutch = rule(report, "dutch")
        assert (dutch.shadowed, dutch.first_matches, dutch.all_matches) == (False, 1, 3)
        assert dutch.shadowed_by == ("organisations", "big-spenders")


class TestProtected:
    PROTECTED = """
version: v1
default_segment: general
protected_attributes: [customer.gender, customer.country]
rules:
  - name: women
    segment: care
    when: customer.gender == "female"
  - name: big-spenders
    segment: vip
    when: features.total_value >= 1000.0
  - name: organisations
    segment: business
    when: customer.type == "organisation"
"""

    def test_rules_reading_protected_attributes_are_flagged(self) -> None:
        report = analyse(rule_set(self.PROTECTED), [])
        assert report.protected_rules == ("women",)
        assert rule(report, "women").protected_reads == ("customer.gender",)
        assert rule(report, "big-spenders").protected_reads == ()
        assert rule(report, "women").reads == ("customer.gender",)

    def test_protected_attributes_are_configurable(self) -> None:
        text = self.PROTECTED.replace("customer.country]", "customer.type]")
        report = analyse(rule_set(text), [])
        assert report.protected_rules == ("women", "organisations")

    def test_an_empty_list_of_protected_attributes_takes_none_of_the_defaults_away(
            self) -> None:
        text = self.PROTECTED.replace("[customer.gender, customer.country]", "[]")
        report = analyse(rule_set(text), [customer("c1", gender="female")])
        assert report.protected_rules == ("women",)
        assert rule(report, "women").protected_reads == ("customer.gender",)
        assert report.proxy_detection.attributes == ("age_band", "gender",
                                                     "socio_economic_band")
        assert report.proxy_detection.rules_checked == ("big-spenders", "organisations")

    def test_a_path_the_file_adds_is_withheld_and_flagged_but_grouped_by_nothing(
            self) -> None:
        """`protected_attributes: [customer.country]` keeps the country off tickets and
        flags the rules that read it; it adds no proxy check (nor a parity group, which
        PARITY_ATTRIBUTES sets: tests/unit/test_parity_settings.py): the service knows no
        bands of a country, and checks the three banded attributes whatever is listed."""
        text = CANDIDATE.replace("default_segment: general\n", "default_segment: general\n"
                                 "protected_attributes: [customer.country]\n")
        candidate = rule_set(text)
        base = [customer(f"c{n}", country="NL" if n % 2 else "DE",
                         gender="female" if n % 2 else "male") for n in range(80)]
        report = analyse(candidate, base)
        assert report.protected_rules == ("dutch",)
        assert rule(report, "dutch").protected_reads == ("customer.country",)
        assert report.proxy_detection.attributes == ("age_band", "gender",
                                                     "socio_economic_band")
        assert report.proxy_detection.rules_checked == ("organisations", "big-spenders")
        decided = candidate.decide(base[1][1])
        assert (decided.rule, decided.decided_by) == ("dutch", {"customer.country": WITHHELD})

    def test_age_is_protected_by_default(self) -> None:
        text = CANDIDATE.replace('customer.country == "NL"',
                                 "customer.age_years != null && customer.age_years > 65")
        report = analyse(rule_set(text), [])
        assert report.protected_rules == ("dutch",)


class TestMoves:
    LIVE = """
version: v1
default_segment: general
rules:
  - name: dutch
    segment: local
    when: customer.country == "NL"
"""

    def test_customers_changing_segment_are_counted_most_first(self) -> None:
        report = analyse(rule_set(CANDIDATE), [
            customer("c1", kind=CustomerType.ORGANISATION, country="NL"),
            customer("c2", kind=CustomerType.ORGANISATION, country="NL"),
            customer("c3", value=5000.0, country="NL"),
            customer("c4", value=5000.0),
            customer("c5", country="NL"),
            customer("c6"),
        ], live=rule_set(self.LIVE, "live.yaml"))
        assert report.moves is not None
        assert report.moves.moves == (Move("local", "business", 2), Move("general", "vip", 1),
                                      Move("local", "vip", 1))
        assert report.moves.unchanged == 2

    def test_no_moves_without_a_live_rule_set(self) -> None:
        report = analyse(rule_set(CANDIDATE), [customer("c1")])
        assert (report.moves, report.live_version) == (None, None)


class TestRuntimeErrors:
    LEVELS = """
version: v1
default_segment: general
rules:
  - name: high-level
    segment: vip
    when: has(customer.attributes.level) && customer.attributes.level > 3
  - name: dutch
    segment: local
    when: customer.country == "NL"
"""

    def test_a_failing_rule_counts_as_not_matching_and_is_reported(self) -> None:
        report = analyse(rule_set(self.LEVELS), [
            customer("text", attributes={"level": "high"}, country="NL"),
            customer("text2", attributes={"level": "low"}),
            customer("number", attributes={"level": 5}),
        ])
        assert report.segment_sizes == {"vip": 1, "local": 1, "general": 1}
        assert report.errors.customers == 2
        [failure] = report.errors.rules
        assert (failure.rule, failure.customers, failure.first_customer_id) == (
            "high-level", 2, "text")
        assert "_>_(string, int64)" in failure.first_error
        assert rule(report, "high-level").all_matches == 1

    def test_no_errors_when_every_rule_evaluates(self) -> None:
        report = analyse(rule_set(self.LEVELS), [customer("n", attributes={"level": 1})])
        assert (report.errors.customers, report.errors.rules) == (0, ())

    def test_a_failing_live_rule_does_not_stop_the_comparison(self) -> None:
        report = analyse(rule_set(CANDIDATE), [customer("t", attributes={"level": "x"})],
                         live=rule_set(self.LEVELS, "live.yaml"))
        assert report.moves is not None
        assert (report.moves.moves, report.moves.unchanged) == ((), 1)
        assert report.errors.customers == 0
