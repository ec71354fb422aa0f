"""When the department tool sends a report again, and after how long.

A report goes under an `Idempotency-Key`, so a second try is safe whatever became of the
first: the router answers it with the first one's receipt and publishes it once. The
tool tries again when the router could not be reached or did not answer in time (the
report may or may not have been taken), and when it answered with `Retry-After` (503:
Kafka did not acknowledge; 409 `in_progress`: a try under the same key is still being
recorded; 429: over the credential's rate). Any other answer is final: a refusal says
what to change, and a second try would get it again."""

from __future__ import annotations

import httpx

# The longest wait between two tries, whatever Retry-After says.
LONGEST_WAIT_SECONDS = 10.0
# How long the tool keeps trying: longer than the router holds a key whose request died
# (three times its PRODUCE_TIMEOUT_SECONDS, 15 s by default) and than a router's restart.
GIVE_UP_AFTER_SECONDS = 60.0


def worth_another_try(error: BaseException) -> bool:
    if isinstance(error, httpx.TransportError):
        return True
    return isinstance(error, httpx.HTTPStatusError) and _retry_after(error.response) is not None


def wait_before(error: BaseException, tries: int) -> float:
    """Seconds to wait after the `tries`-th try failed with `error`: the router's
    Retry-After, else half a second doubled at each try; never over LONGEST_WAIT_SECONDS."""
    asked = _retry_after(error.response) if isinstance(error, httpx.HTTPStatusError) else None
    wait = asked if asked is not None else 0.5 * 2 ** (tries - 1)
    return min(wait, LONGEST_WAIT_SECONDS)


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After", "").strip()
    return float(value) if value.isdigit() else None  # the router sends whole seconds
