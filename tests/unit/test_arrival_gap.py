"""The intake publisher's estimate of the time between its callers, which decides whether
a free producer gathers callers (services/core/transactional_publisher.py)."""

from __future__ import annotations

import math

from services.core.transactional_publisher import ArrivalGap


def test_unknown_until_two_callers_came() -> None:
    gap = ArrivalGap(longest=0.05)
    assert math.isinf(gap.seconds)
    gap.arrived(10.0)
    assert math.isinf(gap.seconds)
    gap.arrived(10.004)
    assert math.isclose(gap.seconds, 0.004)


def test_each_new_gap_weighs_a_tenth() -> None:
    gap = ArrivalGap(longest=0.05)
    for at in (0.0, 0.002, 0.004):  # two gaps of 2 ms
        gap.arrived(at)
    gap.arrived(0.012)  # then one of 8 ms
    assert math.isclose(gap.seconds, 0.002 + 0.1 * (0.008 - 0.002))


def test_a_quiet_spell_counts_as_the_longest_gap_at_most() -> None:
    gap = ArrivalGap(longest=0.05)  # ten times a window of 5 ms
    gap.arrived(0.0)
    gap.arrived(0.001)
    gap.arrived(3600.0)  # an hour without callers
    assert math.isclose(gap.seconds, 0.001 + 0.1 * (0.05 - 0.001))
    assert gap.seconds > 0.005  # the first caller after it is not held


def test_sparse_callers_lift_the_average_over_the_window() -> None:
    gap = ArrivalGap(longest=0.05)
    for n in range(40):  # a caller every second
        gap.arrived(float(n))
    assert math.isclose(gap.seconds, 0.05)


def test_a_burst_after_sparse_callers_is_seen_within_about_two_dozen_callers() -> None:
    gap = ArrivalGap(longest=0.05)
    for n in range(40):  # a caller every second
        gap.arrived(float(n))
    for n in range(1, 26):  # then a burst, a caller a millisecond
        gap.arrived(39.0 + n / 1000)
    assert gap.seconds < 0.005
