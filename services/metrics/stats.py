"""Response-time statistics over a window of timelines. Pure decision code."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta

from services.metrics.timeline import DURATIONS, Timeline

_WINDOW = re.compile(r"^(\d{1,6})([smhd])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_WINDOW = timedelta(days=366)


def parse_window(text: str) -> timedelta:
    """'15m', '1h', '7d' -> timedelta; ValueError says what is accepted."""
    match = _WINDOW.match(text)
    if not match or int(match.group(1)) == 0:
        raise ValueError("window must be a positive number followed by s, m, h or d"
                         " (for example 15m, 1h, 7d)")
    window = timedelta(seconds=int(match.group(1)) * _UNIT_SECONDS[match.group(2)])
    if window > MAX_WINDOW:
        raise ValueError("window must be at most 366d")
    return window


@dataclass(frozen=True)
class Percentiles:
    count: int
    p50: float | None
    p90: float | None
    p99: float | None


def percentiles(values: Iterable[float]) -> Percentiles:
    ordered = sorted(values)

    def rank(share: float) -> float | None:
        if not ordered:
            return None
        return ordered[max(0, math.ceil(share * len(ordered)) - 1)]

    return Percentiles(len(ordered), rank(0.5), rank(0.9), rank(0.99))


@dataclass(frozen=True)
class ServiceStats:
    """How fast one department (or segment) answered over a window."""

    window_seconds: int
    volume: int
    responded: int
    resolved: int
    backlog: int
    first_response_seconds: Percentiles
    resolution_seconds: Percentiles


def durations(timelines: Iterable[Timeline], measure: str) -> list[float]:
    start, end = DURATIONS[measure]
    found = []
    for timeline in timelines:
        started, ended = getattr(timeline, start), getattr(timeline, end)
        if started is not None and ended is not None:
            found.append(max(0.0, (ended - started).total_seconds()))
    return found


def service_stats(window: timedelta, routed: Sequence[Timeline], backlog: int) -> ServiceStats:
    return ServiceStats(
        window_seconds=int(window.total_seconds()),
        volume=len(routed),
        responded=sum(1 for t in routed if t.first_response_at is not None),
        resolved=sum(1 for t in routed if t.resolved_at is not None),
        backlog=backlog,
        first_response_seconds=percentiles(durations(routed, "first_response")),
        resolution_seconds=percentiles(durations(routed, "resolution")),
    )
