"""A partition's cap on its shares after a transaction overran its time (pipeline.py):
halved at each overrun, grown again by a sixteenth with each full share, gone once it
would reach a share's worth (README, "Failures": `TestTooLargeForItsTransaction` runs it
on a broker)."""

from __future__ import annotations

import pytest

from services.core import pipeline


def test_the_transaction_time_and_a_shares_worth_are_as_documented() -> None:
    loop_defaults = pipeline.StageLoop.__init__.__kwdefaults__ or {}
    assert loop_defaults["transaction_timeout_seconds"] == 30.0
    assert loop_defaults["max_batch"] == 500


@pytest.mark.parametrize(("size", "cap"), [(500, 250), (3, 1), (1, 1)])
def test_an_overrun_halves_the_share(size: int, cap: int) -> None:
    assert pipeline.cap_after_overrun(size) == cap


def test_a_full_share_grows_the_cap_by_a_sixteenth_until_it_is_a_shares_worth() -> None:
    caps, cap = [], 250
    while (grown := pipeline.cap_after_share(cap, cap, most=500)) is not None:
        caps.append(cap := grown)
    assert caps[:3] == [265, 281, 298]  # a sixteenth each
    assert len(caps) == 11 and caps[-1] < 500  # about a dozen full shares back


def test_a_share_short_of_the_cap_leaves_it_and_a_small_cap_grows_by_one() -> None:
    assert pipeline.cap_after_share(250, 100, most=500) == 250
    assert pipeline.cap_after_share(1, 1, most=500) == 2
