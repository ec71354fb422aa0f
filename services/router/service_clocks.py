"""The clocks of one ticket, moved by its lifecycle. Pure decision code.

- routed: the first-response clock starts, and the resolution clock if there is a
  resolution target;
- a first response (responded or resolved, lifecycle.py) stops the first-response clock
  and any next-response clock; resolved stops the resolution clock as well;
- waiting on the customer pauses every running clock; the customer's reply resumes
  them, and starts a next-response clock once the ticket has had its first response
  (not before that response, nor before the last next response: clocks.taken_at);
- a transfer or priority change rebases every clock (clocks.rebase), once every notice
  due before it was sent (`owes_notice`);
- what the clocks call for at one moment (`owed`) is sent at once, for the department
  holding the ticket: every breach and second level in one hand-over, to where the
  furthest escalation owed goes (`escalation`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from services.core import lifecycle
from services.core.events import TicketEventType
from services.router import calendars, clocks, escalation_targets, priority, routing

Clock = clocks.Clock
Target = clocks.Target


@dataclass(frozen=True)
class Targets:
    first_response: timedelta
    next_response: timedelta | None = None
    resolution: timedelta | None = None
    warning_share: float | None = None  # None: no warnings


@dataclass(frozen=True)
class TicketClocks:
    targets: Targets
    clocks: tuple[Clock, ...] = field(default_factory=tuple)

    def current(self, target: Target) -> Clock | None:
        found = [clock for clock in self.clocks if clock.target == target]
        return found[-1] if found else None

    def deadlines(self) -> dict[str, datetime | None]:
        """Each target's current deadline (None: paused, stopped or not started)."""
        # In one pass (the last clock of a target is its current one), not a `current`
        # scan a target: asked for each routed ticket.
        latest = {clock.target: clock.deadline for clock in self.clocks}
        return {target: latest[target] for target in clocks.TARGETS if target in latest}

    @property
    def paused(self) -> bool:
        return any(clock.paused_since is not None for clock in self.clocks)

    def next_check(self) -> datetime | None:
        return clocks.next_check(list(self.clocks))

    def as_now(self, clock: Clock) -> Clock:
        """`clock` (read earlier) as these clocks have it now: the one of its key."""
        return next((found for found in self.clocks if found.key == clock.key), clock)

    def with_clock(self, updated: Clock) -> TicketClocks:
        return replace(self, clocks=tuple(updated if clock.key == updated.key else clock
                                          for clock in self.clocks))


def routed(targets: Targets, at: datetime, calendar: calendars.Calendar | None, *,
           first_response_deadline: datetime | None = None) -> TicketClocks:
    """The clocks a routing at `at` starts. `first_response_deadline`: the routing
    decision's (routing.decide: the same target, moment and calendar), taken as the
    first-response clock's, not worked out a second time."""
    started = [clocks.start("first_response", 1, targets.first_response, at, calendar,
                            warning_share=targets.warning_share,
                            deadline=first_response_deadline)]
    if targets.resolution is not None:
        started.append(clocks.start("resolution", 1, targets.resolution, at, calendar,
                                    warning_share=targets.warning_share))
    return TicketClocks(targets, tuple(started))


def reported(state: TicketClocks, event_type: TicketEventType | str, at: datetime,
             calendar: calendars.Calendar | None) -> TicketClocks:
    """The clocks after a department's or the platform's report."""
    share = state.targets.warning_share
    if lifecycle.pauses_clocks(event_type):
        return _each(state, lambda clock: clocks.pause(clock, at, calendar))
    if lifecycle.resumes_clocks(event_type):
        resumed = _each(state, lambda clock: clocks.resume(clock, at, calendar,
                                                           warning_share=share))
        return _next_response(resumed, at, calendar)
    stops: set[str] = set()
    if lifecycle.counts_as_first_response(event_type):
        stops |= {"first_response", "next_response"}
    if lifecycle.reported_status(event_type) is lifecycle.Status.RESOLVED:
        stops.add("resolution")
    return _each(state, lambda clock: clocks.stop(clock, at, calendar)
                 if clock.target in stops else clock)


def handed_over(state: TicketClocks, at: datetime, old: calendars.Calendar | None,
                new: calendars.Calendar | None, targets: Targets | None = None,
                ) -> TicketClocks:
    """A transfer (new calendar) or a priority change (new targets)."""
    targets = targets or state.targets
    durations = {"first_response": targets.first_response,
                 "next_response": targets.next_response, "resolution": targets.resolution}
    return TicketClocks(targets, tuple(
        clocks.rebase(clock, at, old, new, target_duration=durations[clock.target],
                      warning_share=targets.warning_share)
        for clock in state.clocks))


@dataclass(frozen=True)
class Owed:
    """What a ticket's clocks call for by a moment (clocks.due), sent at once."""

    warnings: tuple[Clock, ...] = ()  # clocks whose warning is due, not breached by then
    breached: tuple[Clock, ...] = ()  # clocks whose breach is due (level 1)
    second_levels: tuple[Clock, ...] = ()  # clocks whose level 2 is due, the earliest first

    def __bool__(self) -> bool:
        return bool(self.warnings or self.escalated)

    @property
    def escalated(self) -> tuple[Clock, ...]:
        """The clocks escalated together, in one hand-over (`escalation`)."""
        return (*self.breached, *self.second_levels)

    @property
    def count(self) -> int:
        """How many notices: a warning or an escalation event per clock."""
        return len(self.warnings) + len(self.escalated)


def owed(state: TicketClocks, now: datetime) -> Owed:
    """What the ticket's clocks call for by `now`, for the department holding it.

    Every notice owed fell due while that department held the ticket: a hand-over (an
    escalation, a transfer) and a priority change send what was owed before they are
    made (`owes_notice`), so whatever is owed since came while the ticket was where it
    is, however late the clock watch comes to it (its lease holder down for hours). So
    it is all that department's, sent at once: its warnings of clocks not breached by
    then (a clock's breach supersedes its own warning, clocks.due), then every breach and
    second level together, in one hand-over (`escalation` says where), not one moving the
    ticket and the next moving it again, out of a department that never held it when
    that deadline passed."""
    due = [(clock, clocks.due(clock, now)) for clock in state.clocks]
    return Owed(
        warnings=tuple(clock for clock, notice in due if notice == "warning"),
        breached=tuple(clock for clock, notice in due if notice == "breach"),
        second_levels=tuple(sorted((clock for clock, notice in due
                                    if notice == "second_level"),
                                   key=lambda clock: clock.second_level_at or now)))


def escalation(owed: Owed, table: routing.RoutingTable,
               department: str) -> escalation_targets.Escalation | None:
    """Where the one hand-over of what `owed` escalates takes the ticket `department`
    holds (None: nothing is escalated). It goes where the furthest escalation owed goes:
    a second level (the next step of an escalation already made, to the department named
    at its breach) before a breach (to `department`'s escalation_to), and of second
    levels naming different departments, the one due first; one that would flag the
    ticket where it is leads only if none names a department to go to. Every other
    breach and second level owed goes with it, each clock marked at its own level."""
    candidates = [escalation_targets.on_second_level(table, department,
                                                     clock.second_level_to)
                  for clock in owed.second_levels]
    if owed.breached:
        candidates.append(escalation_targets.on_breach(table, department))
    return next((found for found in candidates if found.to is not None),
                candidates[0] if candidates else None)


def owes_notice(state: TicketClocks, now: datetime) -> bool:
    """Whether a clock calls for a notice by `now` (clocks.due: a warning, a breach, a
    second level) that the clock watch, which checks every ESCALATION_CHECK_SECONDS, has
    not sent yet. A hand-over or a priority change asked then comes after it: the notice
    is sent first, for the department that held the ticket when it fell due, and the
    change is judged on the ticket as it left it. So the outcome does not hang on whether
    the watch ran in between: a deadline missed in one department is its breach,
    escalated to its `escalation_to`, and a transfer asked a moment later is taken or
    refused as it is once that escalation is made."""
    return bool(owed(state, now))


def retargeted(targets: Targets, given: priority.Override | None) -> Targets:
    """A priority change: the new priority's targets where the routing table gives them
    (`priority_targets`), the ticket's own otherwise."""
    if given is None:
        return targets
    return replace(targets, first_response=given.first_response_target
                   or targets.first_response,
                   next_response=given.next_response_target or targets.next_response,
                   resolution=given.resolution_target or targets.resolution)


def reprioritised(state: TicketClocks, at: datetime, calendar: calendars.Calendar | None,
                  given: priority.Override | None) -> TicketClocks:
    """Every clock rebased on the new targets, in the same department's hours: the time
    already spent and paused is kept."""
    return handed_over(state, at, calendar, calendar, retargeted(state.targets, given))


def _next_response(state: TicketClocks, at: datetime,
                   calendar: calendars.Calendar | None) -> TicketClocks:
    first = state.current("first_response")
    latest = state.current("next_response")
    target = state.targets.next_response
    if target is None or first is None or not first.stopped \
            or (latest is not None and not latest.stopped):
        return state
    number = 1 if latest is None else latest.instance + 1
    # A reply dated before the response that stopped the clocks before it starts the
    # next one at that response (clocks.taken_at): never in the past of those clocks.
    at = max(at, *(clocks.last_change(clock) for clock in (first, latest) if clock is not None))
    started = clocks.start("next_response", number, target, at, calendar,
                           warning_share=state.targets.warning_share)
    return replace(state, clocks=(*state.clocks, started))


def _each(state: TicketClocks, change: Any) -> TicketClocks:
    return replace(state, clocks=tuple(change(clock) for clock in state.clocks))


def to_json(state: TicketClocks) -> dict[str, Any]:
    targets = state.targets
    return {"targets": {
        "first_response": targets.first_response.total_seconds(),
        "next_response": None if targets.next_response is None
        else targets.next_response.total_seconds(),
        "resolution": None if targets.resolution is None
        else targets.resolution.total_seconds(),
        "warning_share": targets.warning_share},
        "clocks": [clocks.to_json(clock) for clock in state.clocks]}


def from_json(data: dict[str, Any]) -> TicketClocks:
    raw = data["targets"]

    def seconds(name: str) -> timedelta | None:
        return None if raw.get(name) is None else timedelta(seconds=raw[name])

    first = seconds("first_response")
    assert first is not None
    return TicketClocks(
        Targets(first, seconds("next_response"), seconds("resolution"),
                raw.get("warning_share")),
        tuple(clocks.from_json(item) for item in data.get("clocks", [])))
