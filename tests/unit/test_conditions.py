"""conditions.Costs: the CPU a file's conditions may take on the largest contexts, one
condition and all together, timed by a clock the test moves (the rule sets' and routing
tables' own tests show a costly pattern refused on the real clock)."""

from __future__ import annotations

import pytest

from services.core import conditions
from services.core.config_files import ConfigError


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def evaluated(costs: conditions.Costs, clock: Clock, *, seconds: float) -> None:
    with costs.evaluating():
        clock.now += seconds


class TestCosts:
    def test_a_condition_past_its_cap_is_refused_naming_it(self) -> None:
        clock = Clock()
        costs = conditions.Costs("segments.yaml", clock=clock)
        evaluated(costs, clock, seconds=conditions.CONDITION_CPU_MAX_SECONDS)
        costs.check(4, "at_the_cap", "the largest")
        evaluated(costs, clock, seconds=conditions.CONDITION_CPU_MAX_SECONDS * 1.01)
        with pytest.raises(ConfigError) as error:
            costs.check(9, "past_it", "the largest")
        assert (error.value.path, error.value.line, error.value.entry) == (
            "segments.yaml", 9, "past_it")
        assert "at most 5 ms a condition" in error.value.problem

    def test_a_condition_costs_its_costliest_evaluation(self) -> None:
        clock = Clock()
        costs = conditions.Costs("segments.yaml", clock=clock)
        for seconds in (0.001, 0.004, 0.002):  # three largest contexts
            evaluated(costs, clock, seconds=seconds)
        costs.check(4, "r", "the largest")  # 4 ms: within
        evaluated(costs, clock, seconds=0.006)
        with pytest.raises(ConfigError):
            costs.check(5, "s", "the largest")

    def test_conditions_each_within_theirs_are_refused_past_the_files(self) -> None:
        clock = Clock()
        costs = conditions.Costs("routing.yaml", clock=clock)
        each = conditions.CONDITION_CPU_MAX_SECONDS * 0.9
        within = int(conditions.CONDITIONS_CPU_MAX_SECONDS // each)
        for number in range(within):
            evaluated(costs, clock, seconds=each)
            costs.check(number, f"r{number}", "the largest")
        evaluated(costs, clock, seconds=each)
        with pytest.raises(ConfigError) as error:
            costs.check(99, "one_too_many", "the largest")
        assert error.value.entry == "one_too_many"
        assert "at most 100 ms together" in error.value.problem

    def test_an_evaluation_that_raises_is_still_counted(self) -> None:
        clock = Clock()
        costs = conditions.Costs("segments.yaml", clock=clock)
        with pytest.raises(RuntimeError), costs.evaluating():
            clock.now += 1.0
            raise RuntimeError("the condition failed")
        with pytest.raises(ConfigError):
            costs.check(1, "r", "the largest")
