from datetime import UTC, datetime, timedelta

import pytest

from services.core import config_files
from services.router import overflow

NOW = datetime(2025, 1, 6, 12, 0, tzinfo=UTC)
POLICY = overflow.OverflowPolicy(to="sales_support", max_backlog=100, max_lag=500,
                                 max_predicted_first_response=timedelta(hours=4),
                                 resume_below=0.8)
OVERFLOWING = overflow.OverflowState(True, NOW - timedelta(minutes=10))


def load(backlog: int | None = None, lag: int | None = None,
         predicted: timedelta | None = None) -> overflow.DepartmentLoad:
    return overflow.DepartmentLoad(backlog, lag, predicted)


class TestStartOverflowing:
    def test_within_limits_nothing_changes(self) -> None:
        assert overflow.next_state(overflow.NORMAL, load(90, 100), POLICY, now=NOW) \
            == (overflow.NORMAL, False, "within limits")

    def test_reaching_a_maximum_is_not_crossing_it(self) -> None:
        assert not overflow.next_state(overflow.NORMAL, load(100), POLICY, now=NOW).changed

    def test_any_measure_over_its_maximum_starts_it(self) -> None:
        transition = overflow.next_state(overflow.NORMAL, load(120, 10), POLICY, now=NOW)
        assert transition == (overflow.OverflowState(True, NOW), True, "backlog 120 > 100")

    def test_predicted_first_response_counts(self) -> None:
        transition = overflow.next_state(overflow.NORMAL, load(predicted=timedelta(hours=5)),
                                         POLICY, now=NOW)
        assert transition.state.overflowing
        assert transition.reason == "predicted first response 5h > 4h"


class TestHysteresis:
    def test_stays_overflowing_between_resume_level_and_maximum(self) -> None:
        transition = overflow.next_state(OVERFLOWING, load(90, 100), POLICY, now=NOW)
        assert transition == (OVERFLOWING, False, "backlog 90 not yet below 80")

    def test_one_measure_still_high_keeps_it_overflowing(self) -> None:
        assert overflow.next_state(OVERFLOWING, load(10, 450), POLICY, now=NOW).state \
            == OVERFLOWING

    def test_stops_when_every_measure_is_below_its_resume_level(self) -> None:
        transition = overflow.next_state(OVERFLOWING, load(79, 399), POLICY, now=NOW)
        assert transition == (overflow.NORMAL, True, "backlog 79 < 80; lag 399 < 400")

    def test_no_flapping_around_the_maximum(self) -> None:
        state, changes = overflow.NORMAL, []
        for backlog in (99, 101, 99, 101, 95, 85, 81, 80, 79, 99, 100, 79):
            state, changed, _ = overflow.next_state(state, load(backlog), POLICY, now=NOW)
            changes.append(changed)
        # On at the first 101, off at the first 79, never in between or after.
        assert [i for i, changed in enumerate(changes) if changed] == [1, 8]

    def test_the_start_time_is_kept_while_overflowing(self) -> None:
        later = NOW + timedelta(hours=1)
        assert overflow.next_state(OVERFLOWING, load(150), POLICY, now=later).state.since \
            == OVERFLOWING.since


class TestUnknownLoad:
    def test_no_load_keeps_the_state(self) -> None:
        assert overflow.next_state(OVERFLOWING, None, POLICY, now=NOW) \
            == (OVERFLOWING, False, "no load reported")
        assert overflow.next_state(OVERFLOWING, load(), POLICY, now=NOW).state == OVERFLOWING

    def test_an_unreported_measure_does_not_hold_it_back(self) -> None:
        assert overflow.next_state(OVERFLOWING, load(backlog=10), POLICY, now=NOW).state \
            == overflow.NORMAL

    def test_a_measure_without_a_maximum_is_ignored(self) -> None:
        policy = overflow.OverflowPolicy(to="sales_support", max_backlog=100)
        assert not overflow.next_state(overflow.NORMAL, load(10, lag=10**6), policy,
                                       now=NOW).changed


class TestAdvance:
    def test_reports_only_the_departments_that_changed(self) -> None:
        states, changes = overflow.advance(
            {"customer_care": overflow.NORMAL, "sales_support": OVERFLOWING},
            {"customer_care": load(150), "business_desk": load(150)},
            {"customer_care": POLICY, "sales_support": POLICY}, now=NOW)
        assert states == {"customer_care": overflow.OverflowState(True, NOW),
                          "sales_support": OVERFLOWING}
        assert changes == [overflow.Change("customer_care", overflow.OverflowState(True, NOW),
                                           "backlog 150 > 100")]


class TestFindCycle:
    def test_a_chain_is_not_a_cycle(self) -> None:
        assert overflow.find_cycle({"a": "b", "b": "c"}) is None

    def test_a_loop_is_found(self) -> None:
        assert overflow.find_cycle({"x": "a", "a": "b", "b": "a"}) == ["a", "b", "a"]
        assert overflow.find_cycle({"a": "a"}) == ["a", "a"]


class TestParsePolicy:
    def parse(self, text: str) -> overflow.OverflowPolicy:
        document = config_files.load_yaml("routing.yaml", text)
        return overflow.parse_policy(document["overflow"], source="routing.yaml", line=1,
                                     entry="customer_care")

    def test_valid_policy(self) -> None:
        assert self.parse("overflow: {to: sales_support, max_backlog: 100, max_lag: 500,"
                          " max_predicted_first_response: 4h}\n") == POLICY

    @pytest.mark.parametrize(("text", "problem"), [
        ("overflow: {to: sales_support}\n", "at least one of"),
        ("overflow: {max_backlog: 5}\n", "`to` must name"),
        ("overflow: {to: a, max_backlog: 0}\n", "max_backlog must be a whole number"),
        ("overflow: {to: a, max_lag: many}\n", "max_lag must be a whole number"),
        ("overflow: {to: a, max_backlog: 5, resume_below: 1.5}\n", "resume_below"),
        ("overflow: {to: a, max_predicted_first_response: soon}\n", "duration"),
        ("overflow: {to: a, max_backlog: 5, when: now}\n", "unknown keys ['when']"),
    ])
    def test_errors_name_the_department(self, text: str, problem: str) -> None:
        with pytest.raises(config_files.ConfigError) as error:
            self.parse(text)
        assert problem in error.value.problem
        assert (error.value.line, error.value.entry) == (1, "customer_care")
