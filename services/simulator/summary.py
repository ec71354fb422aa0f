"""What a simulation predicts next to what happened: per department, per segment and per
parity group, and how far a replay is from the measured outcome. Pure decision code.

A simulation's figures are over all its replications: first-response percentiles over
every predicted response, counts as the mean per replication. A ticket's outcome is the
metrics' verdict where its timeline has one (`Served.target_outcome`), else by the
metrics' own rule, with every response known up to `as_of` (`verdict`, by
`service_levels.first_response_verdict`, as the metrics' stats.outcome has it).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from services.core import targets
from services.metrics import service_levels, stats, timeline
from services.simulator.engine import Served

Key = Callable[[Served], Iterable[str]]


@dataclass(frozen=True)
class Outcome:
    received: float
    peak_backlog: float  # most tickets in the backlog at once (`peak_backlog`)
    first_response_seconds: stats.Percentiles
    met: float
    missed: float
    pending: float
    attainment: float | None  # met / (met + missed)
    overflowed_in: float  # tickets it took from an overflowing department
    overflowed_out: float  # tickets it handed on while overflowing
    escalations: float


@dataclass(frozen=True)
class SideBySide:
    actual: Outcome
    simulated: Outcome


@dataclass(frozen=True)
class Comparison:
    departments: Mapping[str, SideBySide]
    segments: Mapping[str, SideBySide]
    groups: Mapping[str, Mapping[str, SideBySide]]  # parity attribute -> group -> figures


def outcome(runs: Sequence[Sequence[Served]], *, as_of: datetime,
            handed_on: Sequence[Sequence[Served]] = ()) -> Outcome:
    """The figures of one or more runs over the same tickets (a run may be empty);
    `handed_on`: the tickets of each run that overflowed away from them."""
    count = max(len(runs), 1)
    durations = [seconds for run in runs for t in run
                 if t.first_response_at is not None and t.first_response_at <= as_of
                 and (seconds := first_response_seconds(t)) is not None]
    decided = [told for run in runs for t in run if (told := verdict(t, as_of)) is not None]
    met, missed = decided.count("met"), decided.count("missed")
    return Outcome(
        received=sum(len(run) for run in runs) / count,
        peak_backlog=sum(peak_backlog(run) for run in runs) / count,
        first_response_seconds=stats.percentiles(durations),
        met=met / count, missed=missed / count, pending=decided.count("pending") / count,
        attainment=met / (met + missed) if met + missed else None,
        overflowed_in=sum(t.overflowed_from is not None for run in runs for t in run) / count,
        overflowed_out=sum(len(run) for run in handed_on) / count,
        escalations=sum(escalated_by(t, as_of) for run in runs for t in run) / count)


def verdict(ticket: Served, as_of: datetime) -> str | None:
    """met, missed or pending; None for a ticket without a deadline and not decided. The
    metrics' verdict where there is one (`Served.target_outcome`: one answered while its
    clock was paused has no deadline, and the router's clock decided it), else told from
    its dates, a response after `as_of` not yet known (a replay runs past the window)."""
    answered = ticket.first_response_at
    return service_levels.first_response_verdict(
        ticket.target_outcome, answered if answered is not None and answered <= as_of else None,
        ticket.first_response_deadline, as_of, last_move=ticket.clock_moved_at)


def escalated_by(ticket: Served, as_of: datetime) -> bool:
    """Escalated, its deadline passed by `as_of` (or its target missed by the metrics'
    verdict: one answered late while its clock was paused has no deadline): a replay
    runs past the window, and a ticket it answers late (or never) is not yet escalated
    while its deadline is ahead, as the actual side counts it
    (history.first_response_late)."""
    deadline = ticket.first_response_deadline
    return ticket.escalated and (ticket.target_outcome == "missed" or (
        deadline is not None and targets.past_due(deadline, as_of)))


def first_response_seconds(ticket: Served) -> float | None:
    """The metrics' first-response measure (`timeline.DURATIONS`, whose moments a Served
    has under the same names), never below 0 (`timeline.seconds_between`)."""
    start, end = timeline.DURATIONS["first_response"]
    return timeline.seconds_between(getattr(ticket, start), getattr(ticket, end))


def peak_backlog(served: Iterable[Served]) -> int:
    """The most tickets in the backlog at once, each from its routing to its first
    response (`Served.in_backlog`: the same count on either side)."""
    changes = []
    for ticket in served:
        since, until = ticket.in_backlog()
        changes.append((since, 1))
        if until is not None:
            changes.append((until, -1))
    peak = backlog = 0
    for _at, change in sorted(changes):  # at one instant, an answer (-1) goes first
        backlog += change
        peak = max(peak, backlog)
    return peak


def compare(actual: Sequence[Served], simulated: Sequence[Sequence[Served]], *,
            as_of: datetime) -> Comparison:
    empty: list[list[Served]] = [[] for _ in simulated] or [[]]
    actual_away = _split([actual], _handed_on)
    simulated_away = _split(simulated, _handed_on)

    def side_by_side(key: Key, *, by_department: bool = False) -> dict[str, SideBySide]:
        actual_parts = _split([actual], key)
        simulated_parts = _split(simulated, key)
        return {name: SideBySide(
            outcome(actual_parts.get(name, [[]]), as_of=as_of,
                    handed_on=actual_away.get(name, []) if by_department else []),
            outcome(simulated_parts.get(name, empty), as_of=as_of,
                    handed_on=simulated_away.get(name, []) if by_department else []))
            for name in sorted({*actual_parts, *simulated_parts,
                                *((*actual_away, *simulated_away) if by_department else ())})}

    attributes = sorted({attribute for ticket in actual for attribute in ticket.groups})
    return Comparison(
        departments=side_by_side(lambda t: [t.department], by_department=True),
        segments=side_by_side(lambda t: [t.segment]),
        groups={attribute: side_by_side(
            lambda t, a=attribute: [t.groups[a]] if a in t.groups else [])  # type: ignore[misc]
            for attribute in attributes})


def _handed_on(ticket: Served) -> list[str]:
    return [ticket.overflowed_from] if ticket.overflowed_from else []


def _split(runs: Sequence[Sequence[Served]], key: Key) -> dict[str, list[list[Served]]]:
    parts: dict[str, list[list[Served]]] = defaultdict(lambda: [[] for _ in runs])
    for number, run in enumerate(runs):
        for ticket in run:
            for name in key(ticket):
                parts[name][number].append(ticket)
    return dict(parts)


# A department with fewer tickets than this is left out of the replay error: a handful
# of first responses has no stable median to compare.
SMALLEST_COMPARED = 100


@dataclass(frozen=True)
class ReplayError:
    """How far a replay is from the measured outcome, at its worst department (among
    those that received at least `SMALLEST_COMPARED` tickets)."""

    received: float  # |simulated - actual| / actual tickets received
    p50: float | None  # relative error of the first-response median
    p90: float | None
    attainment_points: float | None  # |simulated - actual| share of targets met, in points

    def within(self, *, relative: float, points: float) -> bool:
        return all(error is None or error <= relative
                   for error in (self.received, self.p50, self.p90)) \
            and (self.attainment_points is None or self.attainment_points <= points)


def replay_error(departments: Mapping[str, SideBySide], *,
                 smallest: int = SMALLEST_COMPARED) -> ReplayError:
    received: list[float] = []
    p50: list[float] = []
    p90: list[float] = []
    points: list[float] = []
    for figures in departments.values():
        actual, simulated = figures.actual, figures.simulated
        if actual.received < max(smallest, 1):
            continue
        received.append(abs(simulated.received - actual.received) / actual.received)
        for errors, share in ((p50, "p50"), (p90, "p90")):
            was = getattr(actual.first_response_seconds, share)
            predicted = getattr(simulated.first_response_seconds, share)
            if was and predicted is not None:
                errors.append(abs(predicted - was) / was)
        if actual.attainment is not None and simulated.attainment is not None:
            points.append(abs(simulated.attainment - actual.attainment) * 100)
    return ReplayError(max(received, default=0.0), max(p50, default=None),
                       max(p90, default=None), max(points, default=None))
