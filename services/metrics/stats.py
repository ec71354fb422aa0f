"""Response-time statistics over a window of timelines. Pure decision code."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from services.metrics import service_levels
from services.metrics.timeline import DURATIONS, Timeline, accountable_department


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
class TargetAttainment:
    """First-response targets: met, missed, still open (pending), and tickets without one."""

    met: int
    missed: int
    pending: int
    without_target: int
    ratio: float | None  # met / (met + missed)


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
    first_response_target: TargetAttainment


def measured_seconds(timelines: Iterable[Timeline], measure: str) -> list[float]:
    start, end = DURATIONS[measure]
    found = []
    for timeline in timelines:
        started, ended = getattr(timeline, start), getattr(timeline, end)
        if started is not None and ended is not None:
            found.append(max(0.0, (ended - started).total_seconds()))
    return found


def outcome(timeline: Timeline, now: datetime | None) -> str | None:
    """met, missed or pending; None for a ticket without a deadline (and not decided:
    one answered while its clock was paused has none, and the router's clock decided)."""
    if timeline.target_outcome is not None:
        return timeline.target_outcome
    if timeline.first_response_deadline is None:
        return None
    return service_levels.first_response_outcome(
        timeline.first_response_at, timeline.first_response_deadline, now) or "pending"


def attainment(timelines: Iterable[Timeline], now: datetime | None,
               department: str | None = None) -> TargetAttainment:
    counts = {"met": 0, "missed": 0, "pending": 0, None: 0}
    for timeline in timelines:
        decided = outcome(timeline, now)
        if department is None or accountable_department(timeline) == department:
            counts[decided] += 1
    met, missed = counts["met"], counts["missed"]
    return TargetAttainment(met, missed, counts["pending"], counts[None],
                            met / (met + missed) if met + missed else None)


def held_by(timeline: Timeline, department: str) -> bool:
    """Whether the department had the ticket in its queue at some point."""
    if timeline.assignments:
        return any(a.department == department for a in timeline.assignments)
    return timeline.department == department


def ended_at(timeline: Timeline, moment: str, department: str | None) -> bool:
    """The moment is known and, for a department, came while that department held it."""
    at = getattr(timeline, moment)
    return at is not None and (department is None or timeline.department_at(at) == department)


def service_stats(window: timedelta, routed: Sequence[Timeline], backlog: int, *,
                  now: datetime | None = None, department: str | None = None) -> ServiceStats:
    """Statistics of the tickets routed in a window. For a department: the tickets it
    held, the responses and resolutions it gave and the targets it met or missed (a
    transferred ticket counts for each department that held it)."""
    if department is not None:
        routed = [t for t in routed if held_by(t, department)]
    responded = [t for t in routed if ended_at(t, "first_response_at", department)]
    resolved = [t for t in routed if ended_at(t, "resolved_at", department)]
    return ServiceStats(
        window_seconds=int(window.total_seconds()),
        volume=len(routed),
        responded=len(responded),
        resolved=len(resolved),
        backlog=backlog,
        first_response_seconds=percentiles(measured_seconds(responded, "first_response")),
        resolution_seconds=percentiles(measured_seconds(resolved, "resolution")),
        first_response_target=attainment(routed, now, department),
    )
