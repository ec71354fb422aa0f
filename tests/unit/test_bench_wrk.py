"""bench/closed_loop.py reads wrk's total whatever unit wrk prints its duration in."""

from __future__ import annotations

import pytest

from bench.closed_loop import wrk_total


@pytest.mark.parametrize(("line", "expected"), [
    ("  1000 requests in 5.00s, 1.2MB read", (1000, 5.0)),
    ("  15064 requests in 1.00m, 3.74MB read", (15064, 60.0)),
    ("  12 requests in 950.00ms, 3KB read", (12, 0.95)),
])
def test_the_total_and_its_duration_in_seconds(line: str, expected: tuple[int, float]) -> None:
    requests, seconds = wrk_total(f"Running 1m test\n{line}\nRequests/sec: 1\n")
    assert (requests, seconds) == (expected[0], pytest.approx(expected[1]))


def test_output_without_a_total_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="no total"):
        wrk_total("unable to connect to 127.0.0.1:1 Connection refused")
