from datetime import UTC, datetime, timedelta

import pytest

from services.core import config_files
from services.router import priority, table_service_levels

NOW = datetime(2025, 1, 6, 12, 0, tzinfo=UTC)
HALF_HOUR = priority.Aging(step=timedelta(minutes=30))


def levels(text: str) -> priority.ServiceLevels:
    return table_service_levels.parse_service_levels(
        config_files.load_yaml("routing.yaml", text), source="routing.yaml", entry="government")


class TestEffectivePriority:
    def test_a_fresh_ticket_keeps_its_priority(self) -> None:
        assert priority.effective_priority(4, timedelta(0), HALF_HOUR) == 4

    def test_rises_one_level_per_full_step(self) -> None:
        assert priority.effective_priority(4, timedelta(minutes=29), HALF_HOUR) == 4
        assert priority.effective_priority(4, timedelta(minutes=30), HALF_HOUR) == 3
        assert priority.effective_priority(4, timedelta(minutes=65), HALF_HOUR) == 2

    def test_capped_at_the_most_urgent(self) -> None:
        assert priority.effective_priority(5, timedelta(days=3), HALF_HOUR) == 1

    def test_aging_off_never_rises(self) -> None:
        assert priority.effective_priority(5, timedelta(days=3), priority.Aging(None)) == 5


class TestLanes:
    @pytest.mark.parametrize(("level", "lane"), [
        (1, "high"), (2, "high"), (3, "normal"), (4, "low"), (5, "low")])
    def test_priorities_map_to_three_lanes(self, level: int, lane: str) -> None:
        assert priority.lane_for(level) == lane

    def test_the_normal_lane_is_the_department_queue(self) -> None:
        assert priority.lane_topics("customer_care") == [
            "dept.customer_care.high", "dept.customer_care", "dept.customer_care.low"]

    def test_queue_for_a_ticket_without_priority_is_the_normal_lane(self) -> None:
        assert priority.queue_for("customer_care", None) == "dept.customer_care"
        assert priority.queue_for("customer_care", 1) == "dept.customer_care.high"

    def test_an_invalid_department_has_no_lanes(self) -> None:
        with pytest.raises(ValueError):
            priority.lane_topics("Customer Care")

    def test_the_remembered_lanes_keep_no_refusal_and_each_name_its_own(self) -> None:
        """Lane topics are remembered (topics.lane_topic): a name refused is refused
        each time it is asked, and each department keeps its own lanes."""
        for _ in range(2):
            with pytest.raises(ValueError):
                priority.lane_topic("Customer Care", "high")
            assert priority.lane_topic("care", "high") == "dept.care.high"
            assert priority.lane_topic("billing", "normal") == "dept.billing"


class TestChooseNext:
    def test_the_most_urgent_head_goes_first(self) -> None:
        heads = {"high": priority.Head(2, NOW), "low": priority.Head(5, NOW)}
        assert priority.choose_next(heads, now=NOW, aging=HALF_HOUR) == "high"

    def test_a_long_waiting_low_ticket_overtakes_a_fresh_urgent_one(self) -> None:
        heads = {"high": priority.Head(2, NOW), "low": priority.Head(5, NOW - timedelta(hours=2))}
        assert priority.choose_next(heads, now=NOW, aging=HALF_HOUR) == "low"

    def test_equal_priority_goes_to_the_longest_waiting(self) -> None:
        heads = {"high": priority.Head(2, NOW), "normal": priority.Head(3, NOW - timedelta(
            minutes=40))}
        assert priority.choose_next(heads, now=NOW, aging=HALF_HOUR) == "normal"

    def test_a_full_tie_goes_to_the_higher_lane(self) -> None:
        heads = {"low": priority.Head(2, NOW), "normal": priority.Head(2, NOW)}
        assert priority.choose_next(heads, now=NOW, aging=HALF_HOUR) == "normal"

    def test_no_waiting_ticket_means_no_lane(self) -> None:
        assert priority.choose_next({}, now=NOW, aging=HALF_HOUR) is None


class TestServiceLevels:
    DEFAULTS = priority.ServiceLevels(
        priority.Override(4, timedelta(days=1)),
        {"most_valuable": priority.Override(3, timedelta(hours=8))})
    ROUTE = priority.ServiceLevels(
        priority.Override(2, timedelta(hours=4)),
        {"most_valuable": priority.Override(first_response_target=timedelta(hours=2))})

    def test_built_in_when_nothing_is_set(self) -> None:
        assert priority.resolve("existing", None, priority.SAME_AS_DEFAULTS) == priority.BUILT_IN

    def test_defaults_and_their_tier_overrides(self) -> None:
        assert priority.resolve("existing", None, self.DEFAULTS) \
            == priority.ServiceLevel(4, timedelta(days=1))
        assert priority.resolve("most_valuable", None, self.DEFAULTS) \
            == priority.ServiceLevel(3, timedelta(hours=8))

    def test_the_route_beats_the_defaults_and_its_tier_beats_the_route(self) -> None:
        assert priority.resolve("existing", self.ROUTE, self.DEFAULTS) \
            == priority.ServiceLevel(2, timedelta(hours=4))
        assert priority.resolve("most_valuable", self.ROUTE, self.DEFAULTS) \
            == priority.ServiceLevel(2, timedelta(hours=2))

    def test_parsed_from_an_entry(self) -> None:
        parsed = levels("priority: 2\nfirst_response_target: 4h\n"
                        "tiers: {most_valuable: {first_response_target: 2h}}\n")
        assert parsed == self.ROUTE

    @pytest.mark.parametrize(("text", "problem"), [
        ("priority: 0\n", "priority must be a whole number from 1"),
        ("priority: true\n", "priority must be a whole number from 1"),
        ("first_response_target: soon\n", "first_response_target"),
        ("tiers: {gold: {priority: 1}}\n", "'gold' is not a tier"),
        ("tiers: {most_valuable: {speed: 1}}\n", "unknown keys ['speed']"),
        ("tiers: {most_valuable: {priority: 9}}\n", "tiers.most_valuable.priority"),
        ("tiers: [most_valuable]\n", "tiers must map customer tiers"),
    ])
    def test_errors_name_the_entry(self, text: str, problem: str) -> None:
        with pytest.raises(config_files.ConfigError) as error:
            levels(text)
        assert problem in error.value.problem
        assert error.value.entry == "government"
        assert error.value.line == 1


class TestAgingTheRecordsCarry:
    def test_each_head_ages_by_its_own_step(self) -> None:
        # The low ticket was routed under a 30m aging, the high one under 1d.
        heads = {"high": priority.Head(2, NOW - timedelta(minutes=5),
                                       priority.Aging(timedelta(days=1))),
                 "low": priority.Head(5, NOW - timedelta(hours=2), HALF_HOUR)}
        assert priority.choose_next(heads, now=NOW) == "low"

    def test_the_given_aging_overrides_what_the_heads_say(self) -> None:
        heads = {"high": priority.Head(2, NOW - timedelta(minutes=5), HALF_HOUR),
                 "low": priority.Head(5, NOW - timedelta(hours=2), HALF_HOUR)}
        assert priority.choose_next(heads, now=NOW, aging=priority.Aging(None)) == "high"

    def test_a_head_that_says_nothing_ages_by_the_default(self) -> None:
        # Two hours at the default 1h step: 5 -> 3, still behind a 2.
        heads = {"high": priority.Head(2, NOW - timedelta(minutes=5)),
                 "low": priority.Head(5, NOW - timedelta(hours=2))}
        assert priority.DEFAULT_AGING.step == timedelta(hours=1)
        assert priority.choose_next(heads, now=NOW) == "high"

    def test_the_step_travels_as_seconds(self) -> None:
        assert HALF_HOUR.step_seconds == 1800
        assert priority.Aging.of_seconds(1800) == HALF_HOUR
        assert priority.Aging(None).step_seconds is None
        assert priority.Aging.of_seconds(None) == priority.Aging(None)
