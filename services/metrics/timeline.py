"""A ticket's timeline, and what each lifecycle event adds to it. Pure decision code.

Events may arrive twice or out of order. Each moment keeps the earliest time reported
for it, so a duplicate changes nothing, and a measure (time to first response, ...) is
observed exactly once: when every moment and label it needs is first known.

A ticket changes hands by routing, escalation or transfer; each hand-over is an
`Assignment`, known by (kind, from, to), so a replayed one is the same one. The ticket's
department is the one of the latest assignment, but a measure is credited to the
department that held the ticket when it ended. The measures run from receipt (what the
customer waited); the service-level targets are decided by the router's clocks, which
start at the routing (clock_events.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from typing import Any

from services.core import lifecycle, targets
from services.core.events import TicketEvent, TicketEventType
from services.metrics import service_levels

MOMENT_OF = {
    TicketEventType.RECEIVED: "received_at",
    TicketEventType.SEGMENTED: "segmented_at",
    TicketEventType.ROUTED: "routed_at",
    TicketEventType.PICKED_UP: "picked_up_at",
    TicketEventType.RESPONDED: "first_response_at",
    TicketEventType.RESOLVED: "resolved_at",
    TicketEventType.ESCALATED: "escalated_at",
    TicketEventType.TRANSFERRED: "transferred_at",
}
HANDOVERS = {TicketEventType.ESCALATED: ("escalated", "escalation"),
             TicketEventType.TRANSFERRED: ("transferred", "transfer")}

# measure -> (start moment, end moment)
DURATIONS = {
    "first_response": ("received_at", "first_response_at"),
    "queue_wait": ("routed_at", "picked_up_at"),
    "resolution": ("received_at", "resolved_at"),
    "pipeline_latency": ("received_at", "routed_at"),
}
# The most assignments a timeline keeps: past it, the oldest after the first go (the
# ticket still follows, and counts, every hand-over, as the router's trace does).
MAX_ASSIGNMENTS = 50
UNKNOWN = "unknown"


def duration(timeline: Timeline, measure: str) -> float | None:
    """The timeline's duration of the measure (DURATIONS), once both its ends are known."""
    start, end = DURATIONS[measure]
    return seconds_between(getattr(timeline, start), getattr(timeline, end))


def seconds_between(started: datetime | None, ended: datetime | None) -> float | None:
    """A duration's seconds (`duration`), once both its ends are known: never below 0."""
    if started is None or ended is None:
        return None
    return max(0.0, (ended - started).total_seconds())


@dataclass(frozen=True)
class Assignment:
    """The ticket put in a department's hands: routed, escalated or transferred."""

    kind: str
    department: str
    at: datetime
    reason: str
    from_department: str | None = None
    counted: bool = False

    @property
    def key(self) -> tuple[str, str | None, str]:
        return self.kind, self.from_department, self.department


@dataclass(frozen=True)
class Timeline:
    ticket_id: str
    department: str | None = None
    segment: str | None = None
    routing_reason: str | None = None
    received_at: datetime | None = None
    segmented_at: datetime | None = None
    routed_at: datetime | None = None
    picked_up_at: datetime | None = None
    first_response_at: datetime | None = None
    resolved_at: datetime | None = None
    escalated_at: datetime | None = None
    transferred_at: datetime | None = None
    first_response_deadline: datetime | None = None
    target_outcome: str | None = None
    # The department the first-response target was credited to, decided with its outcome.
    target_department: str | None = None
    assignments: tuple[Assignment, ...] = ()
    observed: frozenset[str] = field(default_factory=frozenset)
    paused_at: datetime | None = None  # waiting on the customer since (clock_events.py)
    # The latest move of the router's first-response clock seen (clock_events.py): a
    # response dated before it is taken at it (targets.taken_at).
    clock_moved_at: datetime | None = None
    clock_notices: frozenset[str] = field(default_factory=frozenset)

    def department_at(self, moment: datetime) -> str | None:
        """Who held the ticket at `moment` (lifecycle.held_at; no assignment: its
        department)."""
        return lifecycle.held_at(((a.at, a.department) for a in self.assignments),
                                 moment) or self.department

    def held_before(self, assignment: Assignment) -> str | None:
        earlier = [a for a in self.assignments if a.at < assignment.at]
        return earlier[-1].department if earlier else None


_TIMELINE_FIELDS = frozenset(f.name for f in fields(Timeline))


def changed(timeline: Timeline, **changes: Any) -> Timeline:
    """`dataclasses.replace` for a timeline at a fifth of its cost: each lifecycle event
    changes its timeline a few times, and replace's per-field work and __init__ were the
    metrics stage's largest cost on a busy topic. The fields are copied as they are, then
    changed: the same thing, since a Timeline has no __post_init__ and every field is in
    __init__ (tests/unit/test_timeline.py holds it to replace)."""
    if not changes.keys() <= _TIMELINE_FIELDS:
        raise TypeError(f"a timeline has no field {sorted(changes.keys() - _TIMELINE_FIELDS)}")
    copy = object.__new__(Timeline)
    copy.__dict__.update(timeline.__dict__, **changes)  # in one call: no merged dict first
    return copy


def built(**values: Any) -> Timeline:
    """`Timeline(**values)`, every field given, at a tenth of its cost, as `changed` makes
    its copy: a report builds a timeline a ticket it reads, by the 100,000
    (bench/report_window.py; tests/unit/test_timeline.py holds it to the constructor)."""
    if values.keys() != _TIMELINE_FIELDS:
        raise TypeError("a timeline is built of every field; not given or unknown:"
                        f" {sorted(values.keys() ^ _TIMELINE_FIELDS)}")
    made = object.__new__(Timeline)
    made.__dict__.update(values)
    return made


@dataclass(frozen=True)
class Routed:
    department: str
    segment: str
    reason: str


@dataclass(frozen=True)
class Duration:
    measure: str
    department: str
    segment: str
    seconds: float


@dataclass(frozen=True)
class HandedOver:
    kind: str  # escalated or transferred
    from_department: str
    department: str


@dataclass(frozen=True)
class TargetDecided:
    department: str
    segment: str
    outcome: str  # met or missed


@dataclass(frozen=True)
class ServiceTarget:
    """A service-level clock decided by the router (clock_events.py)."""

    department: str
    segment: str
    target: str  # first_response, next_response or resolution
    outcome: str  # met or missed


@dataclass(frozen=True)
class ClockWarning:
    department: str
    segment: str
    target: str


@dataclass(frozen=True)
class ClockEscalated:
    department: str  # the department that held the ticket
    segment: str
    target: str
    level: int


@dataclass(frozen=True)
class Paused:
    department: str
    segment: str
    seconds: float


Observation = (Routed | Duration | HandedOver | TargetDecided | ServiceTarget | ClockWarning
               | ClockEscalated | Paused)


def apply(timeline: Timeline, event: TicketEvent) -> tuple[Timeline, list[Observation]]:
    """The timeline after `event`, and the observations that became known with it."""
    moment = MOMENT_OF.get(event.type)
    if moment is None:
        return timeline, []
    updated = _with_moment(timeline, moment, event.occurred_at)
    if lifecycle.counts_as_first_response(event.type):
        updated = _with_moment(updated, "first_response_at", event.occurred_at)
    if event.received_at is not None:
        updated = _with_moment(updated, "received_at", event.received_at)
    if event.type is TicketEventType.ROUTED:
        if event.segment and event.segment != updated.segment:
            updated = changed(updated, segment=event.segment)
        updated = _with_moment(updated, "first_response_deadline", event.first_response_deadline)
        if event.department:
            updated = _assign(updated, Assignment("routed", event.department, event.occurred_at,
                                                  event.reason or "route"))
    elif updated.segment is None and event.segment:
        updated = changed(updated, segment=event.segment)
    if event.type in HANDOVERS and event.department:
        kind, default_reason = HANDOVERS[event.type]
        updated = _assign(updated, Assignment(kind, event.department, event.occurred_at,
                                              event.reason or default_reason,
                                              from_department=event.from_department))
    return _observe(updated)


def check_deadline(timeline: Timeline, as_of: datetime) -> tuple[Timeline, list[Observation]]:
    """A deadline passed by `as_of` with no response is a missed target (observed once)."""
    return _observe(timeline, as_of=as_of)


def _with_moment(timeline: Timeline, moment: str, at: datetime | None) -> Timeline:
    current: datetime | None = getattr(timeline, moment)
    if at is None or (current is not None and current <= at):
        return timeline
    changes: dict[str, Any] = {moment: at}
    return changed(timeline, **changes)


def _assign(timeline: Timeline, new: Assignment) -> Timeline:
    assignments = list(timeline.assignments)
    same = [i for i, a in enumerate(assignments) if a.key == new.key]
    if same and (new.kind == "routed" or _sent_again(assignments, new)):
        if assignments[same[0]].at <= new.at:
            return timeline
        assignments[same[0]] = replace(assignments[same[0]], at=new.at)
    else:
        assignments.append(new)
    assignments.sort(key=lambda a: (a.at, a.kind != "routed", a.department))
    if len(assignments) > MAX_ASSIGNMENTS:
        oldest = _first_to_go(assignments)
        if assignments[oldest] is new:  # one let go of already (sent again), or older
            return timeline
        del assignments[oldest]
    first_routing = next((a for a in assignments if a.kind == "routed"), None)
    return changed(timeline, assignments=tuple(assignments),
                   department=assignments[-1].department,
                   routing_reason=first_routing.reason if first_routing else None)


def _first_to_go(assignments: list[Assignment]) -> int:
    """Which assignment a timeline over MAX_ASSIGNMENTS lets go of: the oldest but the
    first (who held the ticket before any) and the first routing (its reason). The
    latest stay: they say who holds the ticket, and is credited with what comes."""
    first_routing = next((a for a in assignments if a.kind == "routed"), None)
    return next(i for i, a in enumerate(assignments) if i > 0 and a is not first_routing)


def _sent_again(assignments: list[Assignment], new: Assignment) -> bool:
    """Whether a hand-over is one the timeline has already (its key is there): the same
    event again, or the same hand-over sent again later (the clock watch's notices are
    at least once) while the ticket was there already. A ticket handed the same way
    again after it came back is a hand-over of its own, as the router's trace has it
    (intake_policy.held_at). Hand-overs come in order: one ticket's events share a
    partition, and its hand-overs are claimed one at a time."""
    if any(a.key == new.key and a.at == new.at for a in assignments):
        return True
    before = [a for a in assignments if a.at < new.at]
    return bool(before) and before[-1].department == new.department


def _observe(timeline: Timeline,
             as_of: datetime | None = None) -> tuple[Timeline, list[Observation]]:
    segment = timeline.segment
    if timeline.department is None or segment is None:
        return timeline, []
    observations: list[Observation] = []
    assignments = []
    for assignment in timeline.assignments:
        if not assignment.counted:
            observations.extend(_handover_observations(timeline, assignment, segment))
            assignment = replace(assignment, counted=True)
        assignments.append(assignment)
    names: set[str] = set()
    for measure, (_start, end) in DURATIONS.items():
        if measure in timeline.observed:
            continue
        seconds = duration(timeline, measure)
        if seconds is None:
            continue
        ended: datetime = getattr(timeline, end)
        department = timeline.department_at(ended) or timeline.department
        observations.append(Duration(measure, department, segment, seconds))
        names.add(measure)
    outcome, credited = timeline.target_outcome, timeline.target_department
    if outcome is None:
        outcome = service_levels.first_response_outcome(
            timeline.first_response_at, timeline.first_response_deadline, as_of,
            last_move=timeline.clock_moved_at)
        if outcome is not None:
            credited = accountable_department(timeline)
            observations.append(TargetDecided(credited, segment, outcome))
    if not observations:
        return timeline, []
    return changed(timeline, assignments=tuple(assignments), target_outcome=outcome,
                   target_department=credited, observed=timeline.observed | names), \
        observations


def _handover_observations(timeline: Timeline, assignment: Assignment,
                           segment: str) -> list[Observation]:
    held = assignment.from_department or timeline.held_before(assignment)
    found: list[Observation] = []
    if held != assignment.department:  # put in another department's queue
        found.append(Routed(assignment.department, segment, assignment.reason))
        if assignment.kind != "routed":  # not an escalation flagged where the ticket is
            found.append(HandedOver(assignment.kind, held or UNKNOWN, assignment.department))
    return found


def escalated(timeline: Timeline) -> bool:
    """Whether the ticket was escalated, on any target at any level: handed to another
    department, or flagged where it is (no department to hand it to, or the one it is
    in). The service parity's escalation rate counts these tickets; the hand-overs alone
    are `HandedOver` (routing_tickets_escalated_total)."""
    return any(assignment.kind == "escalated" for assignment in timeline.assignments)


def credited_department(timeline: Timeline) -> str:
    """The department the first-response target counts for, in the counter and in the
    stats alike: the one its decision credited (the router's clock's, or this service's
    against the deadline); while undecided, `accountable_department`."""
    return timeline.target_department or accountable_department(timeline)


def accountable_department(timeline: Timeline) -> str:
    """The department that met the target (held the ticket at its response) or missed it
    (held it when the deadline passed); while undecided, the one holding it now."""
    deadline = timeline.first_response_deadline
    responded = timeline.first_response_at
    if deadline is None:
        return timeline.department or UNKNOWN
    decisive = responded if responded is not None and targets.answered_in_time(
        responded, deadline, last_move=timeline.clock_moved_at) else deadline
    return timeline.department_at(decisive) or timeline.department or UNKNOWN
