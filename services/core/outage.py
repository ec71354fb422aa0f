"""Riding out an outage of the SQL store: retry for a grace period (a blip costs a short
wait and no change in routing), then go on without the store, degraded, until it answers
again. Pure: the clock is passed in."""

from __future__ import annotations

import time
from collections.abc import Callable


class StoreOutage:
    def __init__(self, grace_seconds: float, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._grace = grace_seconds
        self._clock = clock
        self._failing_since: float | None = None

    def failed(self) -> bool:
        """Note a failure of the store; True once it has been failing for the grace
        period (go on without it), False before (wait and retry)."""
        now = self._clock()
        if self._failing_since is None:
            self._failing_since = now
        return now - self._failing_since >= self._grace

    def recovered(self) -> None:
        self._failing_since = None

    @property
    def degraded(self) -> bool:
        return self._failing_since is not None and \
            self._clock() - self._failing_since >= self._grace
