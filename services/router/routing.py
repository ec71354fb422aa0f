"""Routing policy: which department serves a ticket, how urgently, and by when.

Pure decision code; the time and the departments' load are passed in. A decision is
taken in steps, each one written to its trace:
1. the route of the ticket's segment, or else the fallback department (no ticket is
   ever dropped), with the service level of the route and the customer's tier;
2. the first of the route's refinements whose CEL `when` holds over `ticket` and `tier`
   (a refinement that fails on a ticket is skipped, and the trace says so);
3. after hours: a closed department with `after_hours: {route_to: other}` hands the
   ticket on, followed until an open department; with `pause` it keeps the ticket and
   its first-response clock waits for opening time. A chain that reaches no open
   department (it ends at a closed one, or comes round to one it passed), or comes to
   one whose lanes the router could not make (`lanes_missing`, as overflow below), hands
   nothing on: the ticket stays with the department it started from, whose clock waits;
4. overflow: an overflowing department (overflow.py) hands the ticket along its
   overflow chain, but never to a department that is closed, nor to one whose lanes the
   router could not make (`lanes_missing`: services/router/missing_lanes.py; the trace
   shows the predicted first response of each department on the way whose overflow
   reads it);
5. the first-response deadline: the target in business time on the final department's
   calendar (a department without a calendar is open 24/7).
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from cel_expr_python import cel

from services.core import conditions, durations, tickets
from services.router import calendars, overflow, priority

Lane = priority.Lane
ServiceLevel = priority.ServiceLevel
Reason = Literal["route", "fallback", "refinement", "overflow", "after_hours"]

_T = cel.Type
ENVIRONMENT = cel.NewEnv(variables={"ticket": _T.Map(_T.STRING, _T.DYN), "tier": _T.STRING})


class RefinementError(RuntimeError):
    """A refinement failed on a ticket's data (the ticket is routed without it). The
    message names the refinement and CEL's status code only, as a segment rule's
    dead-letter reason does: it goes into the routed ticket's explanation, which the
    department's lane carries, and CEL's own message may quote the ticket's values."""


@dataclass(frozen=True)
class Refinement:
    name: str
    expression: str
    compiled: Any  # a compiled cel Expression over `ticket` and `tier`
    department: str | None = None  # None: the route's department
    service: priority.Override = priority.NO_OVERRIDE
    line: int | None = None

    def holds(self, activation: Any) -> bool:
        try:
            return conditions.holds(self.compiled, activation)
        except conditions.ConditionFailed as exc:
            raise RefinementError(f"refinement {self.name!r} failed ({exc.kind})") from exc


@dataclass(frozen=True)
class Route:
    segment: str
    department: str
    service: priority.ServiceLevels = priority.SAME_AS_DEFAULTS
    refinements: tuple[Refinement, ...] = ()


@dataclass(frozen=True)
class SecondEscalation:
    """A breached target still unanswered `after` (business time) the breach."""

    after: timedelta
    to: str | None = None  # None: the ticket is flagged (level 2) where it is


@dataclass(frozen=True)
class DepartmentPolicy:
    calendar: calendars.Calendar | None = None  # None: open 24/7
    after_hours_route_to: str | None = None  # None: the clock pauses while closed
    overflow_policy: overflow.OverflowPolicy | None = None
    escalation_to: str | None = None
    second_escalation: SecondEscalation | None = None


ALWAYS_OPEN = DepartmentPolicy()


def overrides_of(routes: Iterable[Route], defaults: priority.ServiceLevels,
                 by_priority: Iterable[priority.Override]) -> list[priority.Override]:
    """Every service level of a table's routes, defaults and priority targets."""
    found = [defaults.own, *defaults.tiers.values(), *by_priority]
    for route in routes:
        found += [route.service.own, *route.service.tiers.values(),
                  *(refinement.service for refinement in route.refinements)]
    return found


@dataclass(frozen=True)
class RoutingTable:
    version: str
    routes: Mapping[str, Route]  # segment -> route
    fallback_department: str
    defaults: priority.ServiceLevels = priority.SAME_AS_DEFAULTS
    department_policies: Mapping[str, DepartmentPolicy] = field(default_factory=dict)
    aging: priority.Aging = priority.DEFAULT_AGING
    warning_share: float | None = None  # a warning at this share of each target
    # The targets a ticket takes when its priority is changed (POST .../priority).
    priority_targets: Mapping[int, priority.Override] = field(default_factory=dict)
    # Each (segment with a route or None for the fallback, tier)'s level, resolved once:
    # the table never changes (a new version is a new table, with an empty memo).
    _levels: dict[tuple[str | None, str], ServiceLevel] = field(
        default_factory=dict, init=False, repr=False, compare=False)

    @classmethod
    def simple(cls, version: str, routes: Mapping[str, str],
               fallback_department: str) -> RoutingTable:
        """A table of plain segment -> department routes (the first table format)."""
        return cls(version, {segment: Route(segment, department)
                             for segment, department in routes.items()}, fallback_department)

    @property
    def overrides(self) -> list[priority.Override]:
        """Every service level the table gives: its defaults, each route's, each tier's
        of either, each refinement's and each priority's."""
        return overrides_of(self.routes.values(), self.defaults,
                            self.priority_targets.values())

    @property
    def departments(self) -> tuple[str, ...]:
        """Every department a ticket can be routed, handed or escalated to."""
        named = [route.department for route in self.routes.values()]
        named += [refinement.department for route in self.routes.values()
                  for refinement in route.refinements if refinement.department]
        named.append(self.fallback_department)
        for department, policy in self.department_policies.items():
            named += [department, policy.after_hours_route_to or department,
                      policy.overflow_policy.to if policy.overflow_policy else department,
                      policy.escalation_to or department,
                      (policy.second_escalation and policy.second_escalation.to)
                      or department]
        return tuple(dict.fromkeys(named))

    def service_level(self, segment: str, tier: str) -> ServiceLevel:
        """The level of a ticket of `tier` in `segment` before any refinement: its
        route's (the fallback's when it has none) and the defaults', by `priority.resolve`,
        resolved once per table."""
        route = self.routes.get(segment)
        key = (segment if route else None, tier)
        level = self._levels.get(key)
        if level is None:
            level = self._levels[key] = priority.resolve(
                tier, route.service if route else None, self.defaults)
        return level

    def lacks(self, department: str) -> bool:
        """Whether the table has no such department (one removed since a ticket went
        there): no ticket is sent there (a transfer is refused, a second level stored
        before is not escalated to), and a ticket held there escalates to the fallback
        (escalation_targets)."""
        return department not in self.departments

    def policy(self, department: str) -> DepartmentPolicy:
        """The department's calendar, hand-overs and escalations; one the table lacks
        has none (open 24/7: a ticket held there breaches by the wall clock, and its
        escalation goes to the fallback by escalation_targets, not by this policy)."""
        return self.department_policies.get(department, ALWAYS_OPEN)

    @property
    def overflow_policies(self) -> dict[str, overflow.OverflowPolicy]:
        return {department: policy.overflow_policy
                for department, policy in self.department_policies.items()
                if policy.overflow_policy is not None}


@dataclass(frozen=True)
class Withheld:
    """A hand-off not made because the department it would go to has lanes the router
    could not make (`lanes_missing`): the ticket stays where it was."""

    step: Literal["after_hours", "overflow"]  # the hand-off withheld
    to: str  # the department whose lanes are missing


@dataclass(frozen=True)
class RoutingDecision:
    department: str
    reason: Reason
    entry: str  # the route's segment, the refinement's name, or "fallback"
    priority: int  # 1 is the most urgent
    first_response_target: timedelta
    first_response_deadline: datetime  # UTC
    table_version: str
    overflowed_from: str | None = None
    # Why, step by step, in words (the ticket's trace is its history of steps).
    explanation: tuple[str, ...] = ()
    level: ServiceLevel | None = None  # every target of the ticket
    # The hand-offs not made for lanes missing, in the order met (the trace says why).
    withheld: tuple[Withheld, ...] = ()

    @property
    def lane(self) -> Lane:
        return priority.lane_for(self.priority)

    @property
    def queue_topic(self) -> str:
        return priority.lane_topic(self.department, self.lane)


def view_of(ticket: tickets.Ticket) -> dict[str, Any]:
    """What a refinement can read of a ticket, as `ticket.<field>`: what a segment rule
    reads of it."""
    return tickets.rule_view(ticket)


def decide(segment: str, tier: str, ticket_view: Mapping[str, Any], table: RoutingTable, *,
           now: datetime, load: Mapping[str, overflow.DepartmentLoad] | None = None,
           overflow_state: Mapping[str, overflow.OverflowState] | None = None,
           lanes_missing: Collection[str] = (),
           ) -> RoutingDecision:
    """Where a ticket goes now, with its priority and first-response deadline.
    `lanes_missing`: the departments whose lanes the router could not make, which no
    after-hours hand-off or overflow hands a ticket to (`_lanes_missing`; each hand-off
    not made so is in the decision's `withheld`)."""
    trace: list[str] = []
    withheld: list[Withheld] = []
    route = table.routes.get(segment)
    reason: Reason
    if route is None:
        department, reason, entry = table.fallback_department, "fallback", "fallback"
        trace.append(f"segment {segment} has no route -> fallback {department}"
                     f" (table {table.version})")
    else:
        department, reason, entry = route.department, "route", segment
        trace.append(f"segment {segment} -> {department} (route {segment!r},"
                     f" table {table.version})")
    level = table.service_level(segment, tier)
    refinement = _first_refinement(route, tier, ticket_view, trace)
    if refinement is not None:
        department = refinement.department or department
        level = refinement.service.apply(level)
        reason, entry = "refinement", refinement.name
        trace.append(f"refinement {refinement.name!r} holds -> {department}")
    handed = _after_hours(table, department, now, trace, lanes_missing, withheld)
    if handed != department:
        department, reason = handed, "after_hours"
    overflowed_from = None
    handed = _overflow(table, department, now, load or {}, overflow_state or {}, trace,
                       lanes_missing, withheld)
    if handed != department:
        overflowed_from, department, reason = department, handed, "overflow"
    calendar = table.policy(department).calendar
    due = calendars.deadline(now, level.first_response_target, calendar)
    clock = f"business hours of {department}" if calendar else "24/7"
    trace.append(f"tier {tier}: priority {level.priority} ({priority.lane_for(level.priority)}"
                 f" lane), first response within"
                 f" {durations.format_duration(level.first_response_target)} ({clock}),"
                 f" due {_local(due, calendar)}")
    for name, target in (("next response", level.next_response_target),
                         ("resolution", level.resolution_target)):
        if target is not None:
            trace.append(f"{name} within {durations.format_duration(target)} ({clock})")
    return RoutingDecision(department, reason, entry, level.priority,
                           level.first_response_target, due, table.version,
                           overflowed_from, tuple(trace), level, tuple(withheld))


def _first_refinement(route: Route | None, tier: str, view: Mapping[str, Any],
                      trace: list[str]) -> Refinement | None:
    if route is None or not route.refinements:
        return None
    activation = ENVIRONMENT.Activation({"ticket": dict(view), "tier": tier})
    for refinement in route.refinements:
        try:
            if refinement.holds(activation):
                return refinement
        except RefinementError as exc:
            trace.append(f"{exc}; skipped")
    return None


def _after_hours(table: RoutingTable, department: str, now: datetime,
                 trace: list[str], lanes_missing: Collection[str],
                 withheld: list[Withheld]) -> str:
    visited = [department]
    while True:
        current = visited[-1]
        policy = table.policy(current)
        if policy.calendar is None or policy.calendar.is_open(now):
            return current
        if policy.after_hours_route_to is None and current == department:
            trace.append(f"{current} closed at {_local(now, policy.calendar)}: the clock"
                         f" starts at {_local(policy.calendar.opens_at(now), policy.calendar)}")
            return current
        if policy.after_hours_route_to is None:  # a closed end: no open department ahead
            trace.append(f"{current} closed at {_local(now, policy.calendar)}, and hands"
                         f" nothing on after hours: {' -> '.join(visited)} all closed:"
                         f" stays with {department}")
            return department
        following = policy.after_hours_route_to
        if following in visited:
            trace.append(f"{' -> '.join(visited)} all closed: stays with {department}")
            return department
        closed = f"{current} closed at {_local(now, policy.calendar)}"
        missing = _lanes_missing(following, lanes_missing)
        if missing:  # as an overflow: no hand-off where the ticket would be dead-lettered
            trace.append(f"{closed}, but {missing}: stays with {department}")
            withheld.append(Withheld("after_hours", following))
            return department
        trace.append(f"{closed}: after hours to {following}")
        visited.append(following)


def _overflow(table: RoutingTable, department: str, now: datetime,
              load: Mapping[str, overflow.DepartmentLoad],
              states: Mapping[str, overflow.OverflowState], trace: list[str],
              lanes_missing: Collection[str], withheld: list[Withheld]) -> str:
    chain = [department]
    while (policy := table.policy(chain[-1]).overflow_policy) is not None:
        current, target = chain[-1], policy.to
        measured = load.get(current)
        if measured is not None and measured.predicted_first_response is not None \
                and policy.max_predicted_first_response is not None:
            trace.append(f"{current}: predicted first response"
                         f" {durations.format_duration(measured.predicted_first_response)}"
                         f" ({measured.prediction_basis or 'no basis given'})")
        transition = overflow.next_state(states.get(current, overflow.NORMAL),
                                         load.get(current), policy, now=now)
        if not transition.state.overflowing or target in chain:
            break
        state = "over" if transition.changed else "still overflowing:"
        target_calendar = table.policy(target).calendar
        if target_calendar is not None and not target_calendar.is_open(now):
            trace.append(f"{current} {state} {transition.reason}, but {target} is closed:"
                         " no overflow")
            break
        missing = _lanes_missing(target, lanes_missing)
        if missing:
            trace.append(f"{current} {state} {transition.reason}, but {missing}:"
                         " no overflow")
            withheld.append(Withheld("overflow", target))
            break
        trace.append(f"{current} {state} {transition.reason}: overflow to {target}")
        chain.append(target)
    return chain[-1]


def _lanes_missing(target: str, lanes_missing: Collection[str]) -> str | None:
    """Why no hand-off (after hours, an overflow) goes to `target`, if its lanes are among
    those the router could not make: a ticket routed there would be dead-lettered
    (services/router/missing_lanes.py), where the department handing it on keeps it."""
    if target not in lanes_missing:
        return None
    return f"{target}'s lanes do not exist (the router could not make them)"


def _local(at: datetime, calendar: calendars.Calendar | None) -> str:
    """`at` to the minute as an explanation says it: in the calendar's zone, or in UTC
    without one."""
    if calendar is None:
        return _minute(at.astimezone(UTC).replace(second=0, microsecond=0, tzinfo=None), None)
    return _minute(at.astimezone(calendar.time_zone).replace(
        second=0, microsecond=0, tzinfo=None), calendar.time_zone.key)


@functools.lru_cache(maxsize=1024)
def _minute(wall_clock: datetime, zone: str | None) -> str:
    # The tickets routed in one minute say the same few times (that minute, the next
    # opening, their deadlines): each written out once (strftime was most of _local).
    if zone is None:
        return f"{wall_clock:%Y-%m-%d %H:%M} UTC"
    return f"{wall_clock:%a %Y-%m-%d %H:%M} {zone}"
