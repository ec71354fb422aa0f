"""The command-line clients' side of the report turns (services/core/report_turns.py).

A report asked for while the same credential's earlier one waits or is computed (another
run under the same `API_TOKEN`) is answered 429 with Retry-After. A report changes
nothing, so the clients ask again, waiting as Retry-After says (at least a second, at
most `LONGEST_WAIT_SECONDS` at a time) and starting no try after `GIVE_UP_AFTER_SECONDS`;
then the last answer stands. Any other answer is final.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import httpx

LONGEST_WAIT_SECONDS = 10.0
GIVE_UP_AFTER_SECONDS = 120.0
# How long a client waits for a report's answer: besides the report itself, the turn it
# may wait for behind REPORTS_AT_ONCE others.
REPORT_TIMEOUT_SECONDS = 600.0


def asked_in_turn(send: Callable[[], httpx.Response], *,
                  sleep: Callable[[float], None] = time.sleep,
                  clock: Callable[[], float] = time.monotonic) -> httpx.Response:
    """`send`'s answer, sent again while it is 429 with Retry-After."""
    give_up_at = clock() + GIVE_UP_AFTER_SECONDS
    while True:
        answer = send()
        wait = _retry_after(answer)
        if wait is None or clock() + wait > give_up_at:
            return answer
        sleep(wait)


def _retry_after(answer: httpx.Response) -> float | None:
    if answer.status_code != 429:
        return None
    try:
        seconds = float(answer.headers.get("Retry-After", ""))
    except ValueError:
        return None
    if not math.isfinite(seconds):
        return None
    return min(max(seconds, 1.0), LONGEST_WAIT_SECONDS)
