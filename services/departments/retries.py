"""When the department tool sends a report again, and after how long.

A report goes under an `Idempotency-Key`, so a second try is safe whatever became of the
first: the router answers it with the first one's receipt and publishes it once. The
tool tries again when the router could not be reached or did not answer in time (the
report may or may not have been taken); when it answered 502, 503 or 504 (Kafka did not
acknowledge, or a proxy in front of a router restarting); and when it asked for it with
`Retry-After` (409 `in_progress`: a try under the same key is still being recorded; 429:
over the credential's rate). Any other answer is final: a refusal says what to change,
and a second try would get it again; so is a request that cannot be sent at all (a
malformed router URL). A transfer or a priority change goes under no key: it is sent
again only when the router turned it away unread, over the rate (429)."""

from __future__ import annotations

import httpx

# The longest wait between two tries, whatever Retry-After says.
LONGEST_WAIT_SECONDS = 10.0
# How long the tool keeps trying (no try starts later): longer than a router's restart,
# and than the router holds a key whose request died (ports.claim_hold: 15 s with the
# default PRODUCE_TIMEOUT_SECONDS), during which it answers 409 in_progress.
GIVE_UP_AFTER_SECONDS = 60.0
_UNAVAILABLE = frozenset({502, 503, 504})
# Not sent, not answered, or cut off mid-answer: the router may be restarting.
_UNREACHABLE = (httpx.NetworkError, httpx.TimeoutException, httpx.RemoteProtocolError)


def worth_another_try(error: BaseException) -> bool:
    if isinstance(error, _UNREACHABLE):
        return True
    if not isinstance(error, httpx.HTTPStatusError):
        return False
    response = error.response
    return response.status_code in _UNAVAILABLE or _retry_after(response) is not None


def over_the_rate(error: BaseException) -> bool:
    """Whether the router turned a request away before acting on it, over the
    credential's rate (429 with Retry-After): sent again after the wait, it is the first
    the router acts on, whatever the request (a transfer, a priority change)."""
    return isinstance(error, httpx.HTTPStatusError) and error.response.status_code == 429 \
        and _retry_after(error.response) is not None


def unconfirmed(error: BaseException) -> bool:
    """Whether the router may have taken the report though no answer said so."""
    return isinstance(error, httpx.TimeoutException | httpx.RemoteProtocolError
                      | httpx.ReadError | httpx.WriteError)


def may_be_recorded(error: BaseException, *, unanswered_before: bool) -> bool:
    """Whether a report given up on with `error` may have been taken all the same: its
    last try was left unanswered, or an earlier one was and no answer since was final
    (a final answer, under the same key, says what became of every try under it)."""
    return unconfirmed(error) or (unanswered_before and worth_another_try(error))


def wait_before(error: BaseException, tries: int) -> float:
    """Seconds to wait after the `tries`-th try failed with `error`: the router's
    Retry-After, else half a second doubled at each try; never over LONGEST_WAIT_SECONDS."""
    asked = _retry_after(error.response) if isinstance(error, httpx.HTTPStatusError) else None
    wait = asked if asked is not None else 0.5 * 2 ** (tries - 1)
    return min(wait, LONGEST_WAIT_SECONDS)


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After", "").strip()
    # The router sends whole seconds; an HTTP date, or anything else, counts as none.
    return float(value) if value.isascii() and value.isdecimal() else None
