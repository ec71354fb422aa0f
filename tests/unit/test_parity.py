"""Service parity across protected groups, over generated histories where the truth is
known: a group served worse is found, equal service reports nothing, small groups stay
hidden."""

import random
import statistics
from datetime import UTC, datetime, timedelta

import pytest

from services.core import groups
from services.metrics import parity
from services.metrics.timeline import Assignment, Timeline

NOW = datetime(2026, 11, 23, 12, tzinfo=UTC)
TARGET = timedelta(hours=4)


def ticket(ticket_id: str, *, answered_after: timedelta | None,
           escalated: bool = False) -> Timeline:
    received = NOW - timedelta(days=2)
    assignments = [Assignment("routed", "care", received, "route")]
    if escalated:
        assignments.append(Assignment("escalated", "desk", received + TARGET, "escalation",
                                      from_department="care"))
    return Timeline(ticket_id=ticket_id, department=assignments[-1].department,
                    segment="general", received_at=received, routed_at=received,
                    first_response_at=received + answered_after if answered_after else None,
                    first_response_deadline=received + TARGET, assignments=tuple(assignments))


def history(groups: dict[str, tuple[int, float, float]],
            seed: int = 3) -> tuple[list[Timeline], dict[str, str]]:
    """Per group (tickets, mean hours to first response, escalation share), with answer
    times drawn from one exponential distribution scaled by the group's mean."""
    rng = random.Random(seed)
    timelines, group_of = [], {}
    for group, (count, mean_hours, escalation) in groups.items():
        for n in range(count):
            hours = rng.expovariate(1 / mean_hours)
            timelines.append(ticket(f"{group}-{n}", answered_after=timedelta(hours=hours),
                                    escalated=rng.random() < escalation))
            group_of[f"{group}-{n}"] = group
    return timelines, group_of


def by_group(report: parity.AttributeParity) -> dict[str, parity.GroupService]:
    return {service.group: service for service in report.groups}


class TestKnownDisparity:
    def test_a_group_answered_three_times_slower_is_flagged(self) -> None:
        timelines, group_of = history({"female": (400, 1.0, 0.02), "male": (400, 1.0, 0.02),
                                       "non_binary": (100, 3.0, 0.02)})
        report = parity.service_parity(timelines, group_of, attribute="gender", now=NOW)
        assert report.below_threshold == ("non_binary",)
        slow = by_group(report)["non_binary"]
        assert slow.ratios[parity.FIRST_RESPONSE] == pytest.approx(1 / 3, abs=0.12)
        assert slow.ratios[parity.TARGET_ATTAINMENT] < 0.8
        assert slow.disparity_ratio is not None and slow.disparity_ratio < 0.5

    def test_a_group_escalated_far_more_often_is_flagged_on_that_measure(self) -> None:
        timelines, group_of = history({"low": (300, 1.0, 0.0), "high": (300, 1.0, 0.5)})
        report = parity.service_parity(timelines, group_of, attribute="socio_economic_band",
                                       now=NOW)
        high = by_group(report)["high"]
        assert report.best_served[parity.WITHOUT_ESCALATION] == "low"
        assert high.escalation_rate == pytest.approx(0.5, abs=0.07)
        assert high.ratios[parity.WITHOUT_ESCALATION] == pytest.approx(0.5, abs=0.07)
        assert report.below_threshold == ("high",)


class TestNoDisparity:
    def test_groups_served_alike_are_not_flagged(self) -> None:
        timelines, group_of = history({"under_25": (300, 1.0, 0.05), "25_34": (300, 1.0, 0.05),
                                       "65_plus": (300, 1.0, 0.05)})
        report = parity.service_parity(timelines, group_of, attribute="age_band", now=NOW)
        assert report.below_threshold == ()
        for service in report.groups:
            assert service.disparity_ratio is not None and service.disparity_ratio > 0.8


    def test_a_gap_below_the_threshold_that_chance_explains_is_not_flagged(self) -> None:
        # Same service for both; with 100 tickets each this draw leaves a median 25% apart.
        timelines, group_of = history({"female": (100, 1.0, 0.0), "male": (100, 1.0, 0.0)})
        report = parity.service_parity(timelines, group_of, attribute="gender", now=NOW)
        lowest = min(s.disparity_ratio or 1.0 for s in report.groups)
        assert lowest < 0.8
        assert report.below_threshold == ()


    def test_five_groups_served_alike_are_flagged_in_few_draws(self) -> None:
        # The best-served of five is picked as the best of them: a test at 5% for each
        # of the 12 comparisons would flag a group in 17 of these 40 draws, not 1 or 2.
        bands = ("low", "lower_middle", "middle", "upper_middle", "high")
        flagged = 0
        for seed in range(40):
            timelines, group_of = history({band: (60, 1.0, 0.05) for band in bands},
                                          seed=seed)
            flagged += bool(parity.service_parity(
                timelines, group_of, attribute="socio_economic_band", now=NOW
            ).below_threshold)
        assert flagged <= 2


class TestSmallGroups:
    def test_a_group_below_the_minimum_is_suppressed_however_badly_served(self) -> None:
        timelines, group_of = history({"female": (100, 1.0, 0.0), "other": (29, 9.0, 0.9)})
        report = parity.service_parity(timelines, group_of, attribute="gender", now=NOW,
                                       policy=parity.Policy(minimum_group_size=30))
        hidden = by_group(report)["other"]
        assert hidden == parity.GroupService("other", suppressed=True)
        assert report.below_threshold == ()

    def test_the_minimum_is_a_setting(self) -> None:
        timelines, group_of = history({"female": (100, 1.0, 0.0), "other": (29, 9.0, 0.9)})
        report = parity.service_parity(timelines, group_of, attribute="gender", now=NOW,
                                       policy=parity.Policy(minimum_group_size=20))
        assert report.below_threshold == ("other",)


class TestUnknownBand:
    def test_tickets_without_a_band_are_measured_but_not_compared(self) -> None:
        timelines, group_of = history({"female": (100, 1.0, 0.0), "male": (100, 1.0, 0.0)})
        slow, _ = history({"x": (100, 9.0, 0.0)}, seed=4)  # no band known for these
        report = parity.service_parity([*timelines, *slow], group_of, attribute="gender",
                                       now=NOW)
        unknown = by_group(report)["unknown"]
        assert unknown.tickets == 100 and unknown.ratios == {}
        assert report.below_threshold == ()


class TestExport:
    def test_one_series_per_group_compared_and_measure(self) -> None:
        timelines, group_of = history({"female": (50, 1.0, 0.0), "male": (50, 3.0, 0.0),
                                       "other": (5, 1.0, 0.0)})
        bands = {ticket: {"gender": group} for ticket, group in group_of.items()}
        reports = parity.parity_by_attribute(timelines, bands, attributes=["gender"], now=NOW)
        series = parity.ratio_series(reports)
        assert {key[:2] for key in series} == {("gender", "female"), ("gender", "male")}
        assert series[("gender", "female", parity.FIRST_RESPONSE)] == 1.0
        assert series[("gender", "male", parity.FIRST_RESPONSE)] < 0.8
        assert parity.flag_series(reports) == {("gender", "female"): 0.0,
                                               ("gender", "male"): 1.0}


class TestThePicturesHistory:
    """What README says of docs/parity.png's generated history (bench/parity_picture.py)."""

    @staticmethod
    def flagged(seed: int) -> set[tuple[str, str]]:
        from bench import parity_picture

        timelines, bands = parity_picture.history(seed=seed)
        return {(found.attribute, group) for found in parity.parity_by_attribute(
                    timelines, bands, attributes=groups.ATTRIBUTES, now=parity_picture.NOW,
                    policy=parity.Policy(minimum_group_size=30))
                for group in found.below_threshold}

    def test_the_picture_flags_the_two_planted_groups_and_nothing_else(self) -> None:
        from bench import parity_picture

        assert len(parity_picture.history()[0]) == 3000
        assert {(a["attribute"], group) for a in parity_picture.answer()["attributes"]
                for group in a["below_threshold"]} == PLANTED

    def test_of_14_seeds_13_flag_exactly_the_planted_groups_one_also_the_low_band(
            self) -> None:
        from bench import parity_picture

        found = {seed: self.flagged(seed) for seed in range(14)}
        [also] = [seed for seed, flagged in found.items() if flagged != PLANTED]
        assert found[also] == PLANTED | {("socio_economic_band", "low")}
        # A real gap, inherited: the low band held more customers over 65 than the best.
        _, bands = parity_picture.history(seed=also)
        over_65 = {band: statistics.mean(b["age_band"] == "65_plus" for b in bands.values()
                                         if b["socio_economic_band"] == band)
                   for band in ("low", "upper_middle")}
        assert (round(over_65["low"], 2), round(over_65["upper_middle"], 2)) == (0.43, 0.34)


PLANTED = {("age_band", "65_plus"), ("gender", "non_binary")}
