from datetime import UTC, datetime, timedelta

import pytest

from services.core import config_files
from services.router import overflow, table_departments

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
        return table_departments.parse_overflow(document["overflow"], source="routing.yaml",
                                                line=1, entry="customer_care")

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


HOUR = timedelta(hours=1)


def predict(backlog: int, answered: int, *, oldest_open_since: datetime | None = None
            ) -> overflow.Prediction:
    return overflow.predict_first_response(
        backlog, overflow.RecentFirstResponses(answered, HOUR),
        oldest_open_since=oldest_open_since, now=NOW)


class TestPredictFirstResponse:
    def test_the_backlog_is_answered_at_the_recent_rate(self) -> None:
        # 3 open ahead, 6 first responses in the last hour: one every 10 minutes.
        prediction = predict(3, 6)
        assert prediction.wait == timedelta(minutes=30)
        assert prediction.basis == "3 open ahead, 6 first responses in the last 1h"

    def test_a_slower_department_predicts_a_longer_wait_for_the_same_backlog(self) -> None:
        assert predict(3, 1).wait == timedelta(hours=3)
        assert predict(3, 1).wait > predict(3, 6).wait

    def test_nothing_ahead_is_no_wait_whatever_the_rate(self) -> None:
        assert predict(0, 0).wait == timedelta(0)
        assert predict(0, 1).wait == timedelta(0)
        assert predict(0, 0).basis == "no open tickets ahead"

    def test_nothing_answered_lately_waits_as_long_as_the_oldest_has(self) -> None:
        prediction = predict(4, 0, oldest_open_since=NOW - timedelta(minutes=50))
        assert prediction.wait == timedelta(minutes=50)
        assert "no first response in the last 1h" in prediction.basis

    def test_nothing_answered_and_no_known_wait_predicts_no_wait(self) -> None:
        assert predict(4, 0).wait == timedelta(0)
        assert predict(4, 0, oldest_open_since=NOW + timedelta(seconds=1)).wait \
            == timedelta(0)


class TestOverflowOnPrediction:
    PREDICTED = overflow.OverflowPolicy(to="sales_support", max_backlog=100,
                                        max_predicted_first_response=timedelta(hours=2),
                                        resume_below=0.5)

    def step(self, state: overflow.OverflowState, backlog: int,
             answered: int) -> overflow.Transition:
        prediction = predict(backlog, answered)
        return overflow.next_state(state, overflow.DepartmentLoad(
            backlog, None, prediction.wait, prediction.basis), self.PREDICTED, now=NOW)

    def test_a_slow_department_overflows_before_its_backlog_limit(self) -> None:
        transition = self.step(overflow.NORMAL, 3, 1)
        assert transition.state.overflowing
        assert transition.reason == "predicted first response 3h > 2h"

    def test_the_same_backlog_answered_fast_does_not_overflow(self) -> None:
        assert not self.step(overflow.NORMAL, 3, 6).state.overflowing

    def test_it_recovers_only_below_the_resume_level(self) -> None:
        over = self.step(overflow.NORMAL, 3, 1).state
        # 2 ahead at 2 an hour: 1h, not below 2h * 0.5.
        held = self.step(over, 2, 2)
        assert (held.state, held.reason) == (over, "predicted first response 1h not yet"
                                                   " below 1h")
        caught_up = self.step(over, 1, 3)
        assert caught_up.state == overflow.NORMAL
        assert caught_up.reason == "backlog 1 < 50; predicted first response 20m < 1h"
