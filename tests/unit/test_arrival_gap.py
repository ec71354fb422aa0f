"""The intake publisher's estimate of the time between its callers, which decides whether
a free producer gathers callers (services/core/transactional_publisher.py)."""

from __future__ import annotations

import math

from services.core.transactional_publisher import ArrivalGap


def test_unknown_until_two_callers_came() -> None:
    gap = ArrivalGap()
    assert math.isinf(gap.seconds)
    gap.arrived(10.0)
    assert math.isinf(gap.seconds)
    gap.arrived(10.004)
    assert math.isclose(gap.seconds, 0.004)


def test_each_new_gap_weighs_a_tenth() -> None:
    gap = ArrivalGap()
    for at in (0.0, 0.002, 0.004):  # two gaps of 2 ms
        gap.arrived(at)
    gap.arrived(0.016)  # then one of 12 ms
    assert math.isclose(gap.seconds, 0.002 + 0.1 * (0.012 - 0.002))


def test_a_quiet_spell_counts_as_a_second_at_most() -> None:
    gap = ArrivalGap()
    gap.arrived(0.0)
    gap.arrived(0.001)
    gap.arrived(3600.0)  # an hour without callers
    assert math.isclose(gap.seconds, 0.001 + 0.1 * (1.0 - 0.001))
    for n in range(1, 60):  # then a burst, a caller a millisecond
        gap.arrived(3600.0 + n / 1000)
    assert gap.seconds < 0.005
