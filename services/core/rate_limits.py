"""Per-credential rate limits, of requests and of their bodies' bytes, counted in this
process: what `auth`'s credential dependency (requests) and `body_limit.BodyLimit`'s hook
(bytes, `auth.spend_body_bytes`) ask before a request goes on; `refusals.Refused`, 429
with Retry-After, past them."""

from __future__ import annotations

import functools
import math
import time

import limits
from limits.storage import MemoryStorage
from limits.strategies import SlidingWindowCounterRateLimiter

from services.core import access, body_bytes, refusals

# The byte budget's identifier beside the credential's: its counters apart from the
# request rate's, whatever the two rates.
_BYTES = "body-bytes"


class _SweptStorage(MemoryStorage):
    """limits' memory storage, its expired windows swept by `sweep` rather than by a
    thread it starts on a hit whenever none runs (at a few requests per 10 ms, one
    thread per request: about a tenth of the intake's CPU, measured with py-spy)."""

    def _MemoryStorage__schedule_expiry(self) -> None:  # the pinned version's hook
        """Nothing: `sweep` expires entries."""

    def sweep(self) -> None:
        self._MemoryStorage__expire_events()  # type: ignore[attr-defined]


# limits wraps a storage's methods in its error wrapper once more for each subclass (the
# pinned version's `__init_subclass__` of Storage, MovingWindowSupport and
# SlidingWindowCounterSupport): here a second layer round a hit's storage calls (its
# `acquire_sliding_window_entry`, and the `get`s and `incr` in it). The wrapper only
# turns the storage's errors into limits' own where `wrap_exceptions` is asked, and this
# storage is built without it: its methods are MemoryStorage's own, unwrapped (a
# request's two hits 10.8-11.3 -> 7.5-7.7 us; README "Measured").
for _method in ("incr", "get", "get_expiry", "check", "reset", "clear", "acquire_entry",
                "get_moving_window", "acquire_sliding_window_entry", "get_sliding_window",
                "clear_sliding_window"):
    setattr(_SweptStorage, _method, getattr(MemoryStorage, _method).__wrapped__)


class RateLimits:
    """Per-credential request rates, and bytes of request bodies, counted in this
    process (a sliding window: two counters a credential and budget, the current
    window's and the previous one's, weighted by how much of it the sliding window still
    covers). A moving window kept every hit of the window and shifted it on each hit: a
    credential allowed 8,640,000 a day held millions and cost milliseconds a request.

    The synchronous limiter: a hit is a few microseconds, where the asyncio one hands
    every hit's expiry to a thread (about 125 us of CPU per request)."""

    SWEEP_SECONDS = 1.0

    def __init__(self, default: str, byte_rate: str = body_bytes.DEFAULT_BYTE_RATE) -> None:
        self._default = limits.parse(default)
        self._byte_rate_text = byte_rate
        self._byte_rate = body_bytes.parse(byte_rate)
        self._storage = _SweptStorage()
        self._limiter = SlidingWindowCounterRateLimiter(self._storage)
        self._swept_at = time.monotonic()

    def _sweep_now_and_then(self) -> None:
        # Expired windows' counters are swept here at most once a second, on the event
        # loop's thread.
        if time.monotonic() - self._swept_at > self.SWEEP_SECONDS:
            self._storage.sweep()
            self._swept_at = time.monotonic()

    def spend_bytes(self, principal: access.Principal, size: int) -> None:
        """Counts `size` bytes of a body against the credential's byte budget (its own
        `byte_rate_limit`, else INTAKE_BYTE_RATE_LIMIT), before they are read; Refused
        (429 `byte_rate_limited`, Retry-After: when they would fit) if they do not fit,
        and then counts none of them."""
        self._sweep_now_and_then()
        own = principal.byte_rate_limit
        budget = _parsed_bytes(own) if own else self._byte_rate
        if self._limiter.hit(budget, principal.credential_id, _BYTES, cost=size):
            return
        previous, previous_ttl, current, current_ttl = self._storage.get_sliding_window(
            budget.key_for(principal.credential_id, _BYTES), budget.get_expiry())
        wait = body_bytes.seconds_until_fits(
            budget=budget.amount, window=budget.get_expiry(), cost=size, previous=previous,
            previous_ttl=previous_ttl, current=current, current_ttl=current_ttl)
        retry_after = max(1, math.ceil(wait))
        raise refusals.Refused(
            429, refusals.BYTE_RATE_LIMITED,
            f"this request's {size} bytes of body are over this credential's"
            f" budget of {own or self._byte_rate_text}"
            f" ({'its own byte_rate_limit' if own else 'INTAKE_BYTE_RATE_LIMIT'});"
            f" retry after {retry_after}s", {"Retry-After": str(retry_after)})

    async def check(self, principal: access.Principal) -> None:
        self._sweep_now_and_then()
        rate = _parsed(principal.rate_limit) if principal.rate_limit else self._default
        if self._limiter.hit(rate, principal.credential_id):
            return
        stats = self._limiter.get_window_stats(rate, principal.credential_id)
        retry_after = max(1, math.ceil(stats.reset_time - time.time()))
        raise refusals.Refused(
            429, refusals.RATE_LIMITED,
            f"over this credential's limit of {rate}; retry after {retry_after}s",
            {"Retry-After": str(retry_after)})


@functools.lru_cache(maxsize=1024)
def _parsed(rate: str) -> limits.RateLimitItem:
    """A credential's rate, parsed once rather than on each request."""
    return limits.parse(rate)


@functools.lru_cache(maxsize=1024)
def _parsed_bytes(rate: str) -> limits.RateLimitItem:
    """A credential's budget of body bytes, parsed once rather than on each request."""
    return body_bytes.parse(rate)
