"""A rate of requests (INTAKE_RATE_LIMIT, a credential's `rate_limit`) and a budget of
body bytes (INTAKE_BYTE_RATE_LIMIT, `byte_rate_limit`) take the same windows, written
once (rate_windows): a window one takes, the other takes; one refuses, both do."""

from __future__ import annotations

import limits
import pytest

from services.core import body_bytes, rate_windows, settings

TAKEN = ["second", "seconds", "minute", "hours", "day", "days", "month", "years",
         "1 second", "5 minutes", "5minutes", "15 minute", "123456789 hours"]
REFUSED = ["", "s", "Second", "MINUTE", "week", "weeks", "0 seconds", "05 minutes",
           "1234567890 seconds", "5  minutes", "  5 minutes", "5 minutes ", "secondss",
           "minute s", "-5 minutes", "5.5 minutes", "5 min", "5m"]


@pytest.mark.parametrize("window", TAKEN + REFUSED)
def test_a_rate_and_a_byte_rate_take_the_same_windows(window: str) -> None:
    taken = window in TAKEN
    assert (settings.RATE.fullmatch(f"10/{window}") is not None,
            body_bytes.BYTE_RATE.fullmatch(f"2MiB/{window}") is not None) == (taken, taken)


@pytest.mark.parametrize("window", TAKEN)
def test_each_window_taken_is_one_limits_reads(window: str) -> None:
    assert limits.parse(f"10/{window}").amount == 10


def test_a_rates_words_name_each_window() -> None:
    assert all(name in settings.RATE.words for name in rate_windows.NAMES)
