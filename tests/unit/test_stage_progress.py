"""A stage's progress (services/core/progress.py): the oldest moment since which a
partition has held records without a share of them finished; now when none does."""

from __future__ import annotations

from prometheus_client import REGISTRY

from services.core.progress import Progress


def shown(stage: str) -> float | None:
    """What the stage's gauge shows (None: nothing exported)."""
    return REGISTRY.get_sample_value("routing_stage_progress_timestamp_seconds",
                                     {"stage": stage})


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_holding_nothing_is_progress_now() -> None:
    clock = Clock()
    progress = Progress("unit-idle", clock)
    progress.holding(set())
    clock.now += 5
    progress.holding(set())
    assert shown("unit-idle") == 1005.0


def test_records_held_and_not_finished_hold_progress_back() -> None:
    clock = Clock()
    progress = Progress("unit-held", clock)
    progress.holding({"p0"})
    clock.now += 600
    progress.holding({"p0"})
    assert shown("unit-held") == 1000.0
    progress.finished("p0")  # a share finished; more of p0's records in hand
    clock.now += 1
    progress.holding({"p0"})
    assert shown("unit-held") == 1600.0
    progress.holding(set())  # all finished
    assert shown("unit-held") == 1601.0


def test_one_partition_stuck_holds_it_back_while_the_others_flow() -> None:
    clock = Clock()
    progress = Progress("unit-one-stuck", clock)
    progress.holding({"p0", "p1"})
    for _ in range(10):
        clock.now += 60
        progress.finished("p1")
        progress.holding({"p0", "p1"})
    assert shown("unit-one-stuck") == 1000.0
    clock.now += 1
    progress.holding({"p1"})  # p0's records finished, or taken away by a rebalance
    assert shown("unit-one-stuck") == 1600.0


def test_a_partition_coming_into_hand_counts_from_then() -> None:
    clock = Clock()
    progress = Progress("unit-new", clock)
    progress.holding(set())
    clock.now += 30
    progress.holding({"p2"})
    clock.now += 30
    progress.holding({"p2"})
    assert shown("unit-new") == 1030.0


def test_a_stage_whose_loop_never_ran_exports_nothing() -> None:
    """An instance that builds a stage it does not run (the intake alone) shows no stall."""
    Progress("unit-never-ran")
    assert shown("unit-never-ran") is None
