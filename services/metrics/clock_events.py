"""What the router's service-level clocks add to a ticket's timeline. Pure decision code.

The router decides each clock (clocks.py): a warning at a share of its target, a breach
(escalation level 1, the target missed), level 2, and a clock stopped in time (met) or
late before a breach was seen (missed), on `deadlines_changed`. The timeline counts each
once, by its keys in `clock_notices`, however often the event comes, and when the router
sends a notice again after a crash, at a later time (`_notice_keys`). Time paused runs from
`waiting_on_customer` to the customer's reply (or the resolution). A transfer or a
priority change moves the first-response deadline the target is decided against; a
pause takes it away until the router's clock says what it is (`deadlines_changed`); each
move of the clock (these, an escalation, the customer's reply) is kept as its last
(`clock_moved_at`): a response dated before it is taken at it, as the router's clock
takes it (services/core/targets.py).
"""

from __future__ import annotations

from services.core import lifecycle, targets
from services.core.events import ClockTarget, TicketEvent, TicketEventType
from services.metrics.timeline import (
    UNKNOWN,
    ClockEscalated,
    ClockWarning,
    Observation,
    Paused,
    ServiceTarget,
    TargetDecided,
    Timeline,
    changed,
)

FIRST_RESPONSE: ClockTarget = "first_response"  # the router's first-response clock
# The events that move the router's first-response clock before its response, at their
# dates (service_clocks.py: a hand-over or priority change rebases it); a report moves it
# when it pauses a running clock or resumes a paused one (`_moved`).
REBASES = frozenset({TicketEventType.TRANSFERRED, TicketEventType.ESCALATED,
                       TicketEventType.PRIORITY_CHANGED})

CLOCK_EVENTS = frozenset({TicketEventType.TARGET_WARNING, TicketEventType.ESCALATED,
                          TicketEventType.DEADLINES_CHANGED, TicketEventType.TRANSFERRED,
                          TicketEventType.PRIORITY_CHANGED,
                          TicketEventType.WAITING_ON_CUSTOMER,
                          TicketEventType.CUSTOMER_REPLIED, TicketEventType.RESOLVED})


def apply(timeline: Timeline, event: TicketEvent) -> tuple[Timeline, list[Observation]]:
    if event.type not in CLOCK_EVENTS:
        return timeline, []
    department = event.department or timeline.department or UNKNOWN
    segment = event.segment or timeline.segment or UNKNOWN
    found: list[tuple[tuple[str, ...], Observation]] = []
    if event.type is TicketEventType.TARGET_WARNING and event.target:
        found.append((_notice_keys("warning", event.target, event),
                      ClockWarning(department, segment, event.target)))
    elif event.type is TicketEventType.ESCALATED and event.target and event.level:
        held = event.from_department or department
        found.append((_notice_keys(f"level{event.level}", event.target, event),
                      ClockEscalated(held, segment, event.target, event.level)))
        if event.level == 1:
            found.append((_notice_keys("breach", event.target, event),
                          ServiceTarget(held, segment, event.target, "missed")))
    elif event.type is TicketEventType.DEADLINES_CHANGED:
        for key, outcome in (event.outcomes or {}).items():
            target = key.partition("#")[0]
            found.append(((f"outcome:{key}",), ServiceTarget(department, segment, target,
                                                             outcome)))
    timeline = _pause(_first_response_deadline(_moved(timeline, event), event), event)
    if timeline.paused_at is not None and _ends_pause(event):
        seconds = max((event.occurred_at - timeline.paused_at).total_seconds(), 0.0)
        found.append(((f"paused:{timeline.paused_at.isoformat()}",),
                      Paused(department, segment, seconds)))
        timeline = changed(timeline, paused_at=None)
    new = [(keys, observation) for keys, observation in found
           if timeline.clock_notices.isdisjoint(keys)]
    if not new:
        return timeline, []
    decided = _first_response_decided(timeline, [observation for _, observation in new])
    if decided is not None:
        timeline = changed(timeline, target_outcome=decided.outcome,
                           target_department=decided.department)
    kept = timeline.clock_notices.union(*(keys for keys, _ in new))
    return (changed(timeline, clock_notices=kept),
            [observation for _, observation in new] + ([decided] if decided else []))


def _notice_keys(kind: str, target: ClockTarget, event: TicketEvent) -> tuple[str, ...]:
    """The keys a notice is counted once by: its time, and the deadline it is about,
    which is the same when the router sends it again after a crash, at a later time (a
    missed deadline stays the clock's, clocks.py). Either seen, it was counted."""
    keys = (f"{kind}:{target}:{event.occurred_at.isoformat()}",)
    deadline = (event.deadlines or {}).get(target)
    return keys if deadline is None else (*keys, f"{kind}:{target}:due:{deadline.isoformat()}")


def _first_response_decided(timeline: Timeline, observations: list[Observation]
                            ) -> TargetDecided | None:
    """The first-response target as the router's clock decided it, if the timeline could
    not decide it against a deadline first: the clock stopped while paused (the deadline
    is None then), or breached. Counted once, as `target_outcome` then says."""
    if timeline.target_outcome is not None:
        return None
    for observation in observations:
        if isinstance(observation, ServiceTarget) and observation.target == FIRST_RESPONSE:
            return TargetDecided(observation.department, observation.segment,
                                 observation.outcome)
    return None


def _moved(timeline: Timeline, event: TicketEvent) -> Timeline:
    """The clock's last move: the latest date of the moves seen (the router's clock takes
    a move dated before its last change at that change: clocks.taken_at)."""
    paused = timeline.paused_at is not None
    moves = event.type in REBASES or (lifecycle.pauses_clocks(event.type) and not paused) \
        or (lifecycle.resumes_clocks(event.type) and paused)
    if not moves or timeline.target_outcome is not None:
        return timeline
    moved = targets.taken_at(event.occurred_at, timeline.clock_moved_at)
    return timeline if moved == timeline.clock_moved_at else changed(timeline,
                                                                     clock_moved_at=moved)


def _first_response_deadline(timeline: Timeline, event: TicketEvent) -> Timeline:
    """The router's current first-response deadline (None while paused), so that the
    first-response target is decided against the clock, pauses and transfers included.
    A pause takes it away at once: the router's clock has none then, and one it gets
    back at the customer's reply comes with its `deadlines_changed`."""
    if timeline.target_outcome is not None:
        return timeline
    if lifecycle.pauses_clocks(event.type):
        return changed(timeline, first_response_deadline=None)
    if event.deadlines is None or FIRST_RESPONSE not in event.deadlines \
            or _older(event, timeline):
        return timeline
    return changed(timeline, first_response_deadline=event.deadlines[FIRST_RESPONSE])


def _older(event: TicketEvent, timeline: Timeline) -> bool:
    """Whether a `deadlines_changed` was worked out before a move of the clock the
    timeline has seen: the router's follower publishes it after the report, and a
    hand-over or priority change made after the report can be on the topic first, its
    deadlines counting the report already. The router takes each move of a clock no
    earlier than its last (clocks.taken_at), so the clock's last change orders them; at
    the same moment the later on the topic stands. One not telling (`as_of` None, from
    an older router) is taken."""
    return event.type is TicketEventType.DEADLINES_CHANGED and event.as_of is not None \
        and timeline.clock_moved_at is not None and event.as_of < timeline.clock_moved_at


def _pause(timeline: Timeline, event: TicketEvent) -> Timeline:
    if lifecycle.pauses_clocks(event.type) and timeline.paused_at is None \
            and not _seen(timeline, f"paused:{event.occurred_at.isoformat()}"):
        return changed(timeline, paused_at=event.occurred_at)
    return timeline


def _ends_pause(event: TicketEvent) -> bool:
    return lifecycle.resumes_clocks(event.type) or event.type is TicketEventType.RESOLVED


def _seen(timeline: Timeline, key: str) -> bool:
    return key in timeline.clock_notices


