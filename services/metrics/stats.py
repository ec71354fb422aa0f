"""Response-time statistics over a window of timelines. Pure decision code."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from services.metrics import service_levels
from services.metrics.timeline import Timeline, credited_department, duration


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


def outcome(timeline: Timeline, now: datetime | None) -> str | None:
    """met, missed or pending; None for a ticket without a deadline (and not decided:
    one answered while its clock was paused has none, and the router's clock decided)."""
    return service_levels.first_response_verdict(
        timeline.target_outcome, timeline.first_response_at,
        timeline.first_response_deadline, now, last_move=timeline.clock_moved_at)


def held_by(timeline: Timeline, department: str) -> bool:
    """Whether the department had the ticket in its queue at some point."""
    if timeline.assignments:
        return any(a.department == department for a in timeline.assignments)
    return timeline.department == department


def ended_at(timeline: Timeline, moment: str, department: str | None) -> bool:
    """The moment is known and, for a department, came while that department held it."""
    at = getattr(timeline, moment)
    return at is not None and (department is None or timeline.department_at(at) == department)


def service_stats(window: timedelta, routed: Iterable[Timeline], backlog: int, *,
                  now: datetime | None = None, department: str | None = None) -> ServiceStats:
    """Statistics of the tickets routed in a window (Tally, over a list)."""
    tally = Tally(window, now=now, department=department)
    for timeline in routed:
        tally.add(timeline)
    return tally.stats(backlog)


class Tally:
    """Statistics of the tickets routed in a window, counted one ticket at a time, so a
    long window is read a page at a time and no ticket is kept, only its durations. For
    a department: the tickets it held, the responses and resolutions it gave and the
    targets it met or missed (a transferred ticket counts for each department that held
    it)."""

    def __init__(self, window: timedelta, *, now: datetime | None = None,
                 department: str | None = None) -> None:
        self.window, self.now, self.department = window, now, department
        self.volume = self.responded = self.resolved = 0
        self._first_response: list[float] = []
        self._resolution: list[float] = []
        self._outcomes: dict[str | None, int] = {"met": 0, "missed": 0, "pending": 0, None: 0}

    def add(self, timeline: Timeline) -> None:
        department = self.department
        if department is not None and not held_by(timeline, department):
            return
        self.volume += 1
        if ended_at(timeline, "first_response_at", department):
            self.responded += 1
            self._count(self._first_response, duration(timeline, "first_response"))
        if ended_at(timeline, "resolved_at", department):
            self.resolved += 1
            self._count(self._resolution, duration(timeline, "resolution"))
        if department is None or credited_department(timeline) == department:
            self._outcomes[outcome(timeline, self.now)] += 1  # a target it was accountable for

    @staticmethod
    def _count(durations: list[float], seconds: float | None) -> None:
        if seconds is not None:
            durations.append(seconds)

    def stats(self, backlog: int) -> ServiceStats:
        return ServiceStats(
            window_seconds=int(self.window.total_seconds()),
            volume=self.volume,
            responded=self.responded,
            resolved=self.resolved,
            backlog=backlog,
            first_response_seconds=percentiles(self._first_response),
            resolution_seconds=percentiles(self._resolution),
            first_response_target=self._attainment(),
        )

    def _attainment(self) -> TargetAttainment:
        met, missed = self._outcomes["met"], self._outcomes["missed"]
        return TargetAttainment(met, missed, self._outcomes["pending"], self._outcomes[None],
                                met / (met + missed) if met + missed else None)


class Tallies:
    """A Tally per department or per segment, each made when a ticket first counts for
    it."""

    def __init__(self, window: timedelta, *, now: datetime | None,
                 names_of: Callable[[Timeline], Iterable[str]], held: bool) -> None:
        self.window, self.now = window, now
        self._names_of, self._held = names_of, held
        self._tallies: dict[str, Tally] = {}

    @classmethod
    def per_department(cls, window: timedelta, *, now: datetime | None) -> Tallies:
        """A ticket counts for every department that held it (a transfer: each)."""
        return cls(window, now=now, names_of=_holders, held=True)

    @classmethod
    def per_segment(cls, window: timedelta, *, now: datetime | None) -> Tallies:
        return cls(window, now=now, names_of=_segment, held=False)

    def add(self, timeline: Timeline) -> None:
        for name in self._names_of(timeline):
            if name not in self._tallies:
                self._tallies[name] = self._new(name)
            self._tallies[name].add(timeline)

    def stats(self, backlog: Mapping[str, int]) -> dict[str, ServiceStats]:
        """Each one's statistics, and those of every name with a backlog (none routed in
        the window: no tickets counted)."""
        return {name: (self._tallies.get(name) or self._new(name)).stats(backlog.get(name, 0))
                for name in sorted(self._tallies.keys() | backlog.keys())}

    def _new(self, name: str) -> Tally:
        return Tally(self.window, now=self.now, department=name if self._held else None)


def _holders(timeline: Timeline) -> set[str]:
    """Its departments, then and now (Tally counts it for those that held it)."""
    names = {a.department for a in timeline.assignments}
    if timeline.department:
        names.add(timeline.department)
    return names


def _segment(timeline: Timeline) -> tuple[str, ...]:
    return (timeline.segment,) if timeline.segment else ()
