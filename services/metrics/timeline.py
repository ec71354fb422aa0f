"""A ticket's timeline, and what each lifecycle event adds to it. Pure decision code.

Events may arrive twice or out of order. Each moment keeps the earliest time reported
for it, so a duplicate changes nothing, and a measure (time to first response, ...) is
observed exactly once: when every moment and label it needs is first known.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from services.core.events import TicketEvent, TicketEventType

MOMENT_OF = {
    TicketEventType.RECEIVED: "received_at",
    TicketEventType.SEGMENTED: "segmented_at",
    TicketEventType.ROUTED: "routed_at",
    TicketEventType.PICKED_UP: "picked_up_at",
    TicketEventType.RESPONDED: "first_response_at",
    TicketEventType.RESOLVED: "resolved_at",
}

# measure -> (start moment, end moment)
DURATIONS = {
    "first_response": ("received_at", "first_response_at"),
    "queue_wait": ("routed_at", "picked_up_at"),
    "resolution": ("received_at", "resolved_at"),
    "pipeline_latency": ("received_at", "routed_at"),
}


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
    observed: frozenset[str] = field(default_factory=frozenset)


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


Observation = Routed | Duration


def apply(timeline: Timeline, event: TicketEvent) -> tuple[Timeline, list[Observation]]:
    """The timeline after `event`, and the observations that became known with it."""
    moment = MOMENT_OF.get(event.type)
    if moment is None:
        return timeline, []
    updated = _with_moment(timeline, moment, event.occurred_at)
    if event.received_at is not None:
        updated = _with_moment(updated, "received_at", event.received_at)
    if event.type is TicketEventType.ROUTED:
        updated = replace(updated, department=event.department or updated.department,
                          segment=event.segment or updated.segment,
                          routing_reason=event.reason or updated.routing_reason)
    elif event.type is TicketEventType.SEGMENTED and updated.segment is None:
        updated = replace(updated, segment=event.segment)
    return _observe(updated)


def _with_moment(timeline: Timeline, moment: str, at: datetime) -> Timeline:
    current: datetime | None = getattr(timeline, moment)
    if current is not None and current <= at:
        return timeline
    changes: dict[str, Any] = {moment: at}
    return replace(timeline, **changes)


def _observe(timeline: Timeline) -> tuple[Timeline, list[Observation]]:
    if timeline.department is None or timeline.segment is None:
        return timeline, []
    observations: list[Observation] = []
    if "routed" not in timeline.observed and timeline.routed_at is not None:
        observations.append(Routed(timeline.department, timeline.segment,
                                   timeline.routing_reason or "route"))
    for measure, (start, end) in DURATIONS.items():
        started, ended = getattr(timeline, start), getattr(timeline, end)
        if measure in timeline.observed or started is None or ended is None:
            continue
        seconds = max(0.0, (ended - started).total_seconds())
        observations.append(Duration(measure, timeline.department, timeline.segment, seconds))
    if not observations:
        return timeline, []
    names = {o.measure if isinstance(o, Duration) else "routed" for o in observations}
    return replace(timeline, observed=timeline.observed | names), observations
