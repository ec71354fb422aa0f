"""Replaying a window of past tickets through a rule set and a routing table. Pure
decision code: the history, the candidate and the departments' measured service times
are passed in; nothing is read or written.

Each ticket, in the order received, is segmented by the candidate rules (or keeps the
segment it was given then) and routed by the real routing decision
(`routing.decide`), with the load the simulated departments carry at that moment (their
backlog and, where an overflow reads them, their lag and predicted first response),
their overflow states advanced by the real overflow rule (`overflow.advance`), and the
departments whose lanes the router could not make now (`lanes_missing`), which no
after-hours hand-off or overflow hands a ticket to, as in the router, and whose missing
lanes no ticket reaches (dead-lettered by the router, served by no department: lanes.py). A
department answers its tickets first come, first served, one at a time, each taking a
service time drawn from an exponential distribution with the department's measured mean,
and only while its calendar is open (`calendars.deadline`). A ticket still unanswered at
its deadline is escalated, as the router does; the escalation is counted, and the
ticket stays in its department's queue (the hand-over is not replayed). The draws are
seeded, so a simulation is repeatable; several replications smooth the draw.
"""

from __future__ import annotations

import heapq
import random
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any

from services.core import targets
from services.router import calendars, overflow, routing
from services.segmenter import rules
from services.simulator import lanes

NONE_MISSING: Mapping[str, Sequence[str]] = MappingProxyType({})


@dataclass(frozen=True)
class Served:
    """How one ticket was served, as it happened or as a simulation predicts it."""

    ticket_id: str
    department: str  # the department it was routed to
    segment: str
    received_at: datetime
    first_response_at: datetime | None
    first_response_deadline: datetime | None
    overflowed_from: str | None  # the department that handed it on, overflowing
    escalated: bool
    groups: Mapping[str, str] = field(default_factory=dict)  # parity attribute -> group
    # When it was routed (None: not known, taken as received; a replay routes each ticket
    # the moment it is received).
    routed_at: datetime | None = None
    # The last move of its first-response clock before the response, as the metrics saw
    # it (timeline.clock_moved_at): the response is taken no earlier (targets.taken_at).
    # None: none known (a replay's tickets, served in order).
    clock_moved_at: datetime | None = None
    # Its first-response target as the metrics decided it (timeline.target_outcome: met or
    # missed), the verdict counted where there is one: a ticket answered while its clock
    # was paused has no deadline then, and the router's clock decided it. None: not
    # decided yet, or a replay's ticket: told from its dates (summary.verdict).
    target_outcome: str | None = None

    def in_backlog(self) -> tuple[datetime, datetime | None]:
        """When the ticket was in its department's backlog, what happened and a replay
        alike: from its routing to its first response (None: none yet), never ending
        before it began.

        The backlog of services/core/lifecycle.py (routed tickets awaiting a first
        response; a first response is a `responded` or a `resolved` report, as the
        timeline's first_response_at is), but for its exception: a ticket waiting on the
        customer before its first response is out of it while it waits. Neither side can
        apply that exception: a timeline keeps only the pause a ticket is in now, not
        those that ended, and a replay has no pauses (the measured service time includes
        them: rates.py). Applied to one side only, the same ticket would count
        differently on the two; so both count it across such a pause, which makes their
        backlog at least the lifecycle's. The department is the one the ticket was routed
        to, on both sides (a replay does not hand an escalated ticket over)."""
        since = self.routed_at or self.received_at
        if self.first_response_at is None:
            return since, None
        return since, max(since, self.first_response_at)


@dataclass(frozen=True)
class HistoricTicket:
    ticket_id: str
    received_at: datetime
    segment: str  # as segmented then
    tier: str  # as known then
    view: Mapping[str, Any]  # what a refinement reads (routing.view_of)
    context: Mapping[str, Any] | None  # what segment rules read; None: not loaded
    actual: Served
    groups: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Candidate:
    table: routing.RoutingTable
    rules: rules.RuleSet | None = None  # None: each ticket keeps the segment it had


@dataclass(frozen=True)
class Replication:
    served: tuple[Served, ...]
    # Tickets a candidate rule failed on (it did not hold for them: RuleSet.decide).
    rule_failures: tuple[str, ...]
    # The tickets the departments whose lanes are missing changed (lanes.affected).
    affected: tuple[lanes.Affected, ...] = ()


@dataclass
class _Queue:
    calendar: calendars.Calendar | None
    mean_service: float | None  # seconds; None: never measured, so never answered
    free_at: datetime | None = None
    # When each ticket not yet taken will be: after the one before is answered, once open.
    untaken: deque[datetime] = field(default_factory=deque)
    open: list[tuple[datetime, datetime]] = field(default_factory=list)  # (answer, received)
    never_answered: list[datetime] = field(default_factory=list)  # received
    answered: deque[datetime] = field(default_factory=deque)

    def catch_up(self, now: datetime, window: timedelta) -> None:
        while self.untaken and self.untaken[0] <= now:
            self.untaken.popleft()
        while self.open and self.open[0][0] <= now:
            self.answered.append(heapq.heappop(self.open)[0])
        while self.answered and self.answered[0] < now - window:
            self.answered.popleft()

    @property
    def backlog(self) -> int:
        return len(self.open) + len(self.never_answered)

    @property
    def lag(self) -> int:
        """The router's lag of the department's lanes (`overflow.DepartmentLoad.lag`): its
        tickets not yet taken, waiting for the one before or for the calendar to open,
        and every ticket of a department that never answers."""
        return len(self.untaken) + len(self.never_answered)

    def load(self, now: datetime, window: timedelta,
             policy: overflow.OverflowPolicy | None) -> overflow.DepartmentLoad:
        """As the router samples it: the lag and the predicted first response only where
        the department's overflow reads them."""
        lag = self.lag if policy is not None and policy.max_lag is not None else None
        if policy is None or policy.max_predicted_first_response is None:
            return overflow.DepartmentLoad(backlog=self.backlog, lag=lag)
        oldest = min([received for _answer, received in self.open] + self.never_answered,
                     default=None)
        prediction = overflow.predict_first_response(
            self.backlog, overflow.RecentFirstResponses(len(self.answered), window),
            oldest_open_since=oldest, now=now)
        return overflow.DepartmentLoad(backlog=self.backlog, lag=lag,
                                       predicted_first_response=prediction.wait,
                                       prediction_basis=prediction.basis)

    def take(self, received: datetime, draw: random.Random) -> datetime | None:
        if self.mean_service is None:
            self.never_answered.append(received)
            return None
        start = max(received, self.free_at or received)
        self.untaken.append(start if self.calendar is None else self.calendar.opens_at(start))
        service = timedelta(seconds=draw.expovariate(1 / self.mean_service))
        answer = calendars.deadline(start, service, self.calendar)
        self.free_at = answer
        heapq.heappush(self.open, (answer, received))
        return answer


def replicate(history: Sequence[HistoricTicket], candidate: Candidate, *,
              mean_service: Mapping[str, float], rate_window: timedelta,
              seed: int, lanes_missing: Mapping[str, Sequence[str]] = NONE_MISSING,
              ) -> Replication:
    """One replay of the history; `mean_service`: seconds per first response, per
    department; `rate_window`: how far back the router counts first responses when it
    predicts one (services.router.load); `lanes_missing`: the departments whose lanes
    the router could not make (routing.decide's), each with its lanes missing."""
    table = candidate.table
    draw = random.Random(seed)
    queues = {department: _Queue(table.policy(department).calendar,
                                 mean_service.get(department))
              for department in table.departments}
    states: dict[str, overflow.OverflowState] = {}
    served: list[Served] = []
    failures: list[str] = []
    affected: list[lanes.Affected] = []
    for ticket in sorted(history, key=lambda t: (t.received_at, t.ticket_id)):
        now = ticket.received_at
        segment, failed = _segment(ticket, candidate.rules)
        if failed:
            failures.append(ticket.ticket_id)
        for queue in queues.values():
            queue.catch_up(now, rate_window)
        loads = {department: queue.load(now, rate_window,
                                        table.overflow_policies.get(department))
                 for department, queue in queues.items()}
        states, _changes = overflow.advance(states, loads, table.overflow_policies, now=now)
        decision = routing.decide(segment, ticket.tier, ticket.view, table, now=now,
                                  load=loads, overflow_state=states,
                                  lanes_missing=lanes_missing)
        affected += lanes.affected(decision, lanes_missing)
        if lanes.dead_lettered(decision, lanes_missing):
            continue  # in no department's queue, as in the router's dead letters
        answer = queues[decision.department].take(now, draw)
        deadline = decision.first_response_deadline
        served.append(Served(
            ticket.ticket_id, decision.department, segment, now, answer, deadline,
            overflowed_from=decision.overflowed_from,
            escalated=answer is None or not targets.answered_in_time(answer, deadline),
            groups=ticket.groups, routed_at=now))
    return Replication(tuple(served), tuple(failures), tuple(affected))


def simulate(history: Sequence[HistoricTicket], candidate: Candidate, *,
             mean_service: Mapping[str, float], rate_window: timedelta,
             replications: int = 5, seed: int = 15,
             lanes_missing: Mapping[str, Sequence[str]] = NONE_MISSING,
             ) -> list[Replication]:
    return [replicate(history, candidate, mean_service=mean_service,
                      rate_window=rate_window, seed=seed + number,
                      lanes_missing=lanes_missing)
            for number in range(replications)]


def _segment(ticket: HistoricTicket, rule_set: rules.RuleSet | None) -> tuple[str, bool]:
    """The ticket's segment under `rule_set`, and whether a rule failed on its data."""
    if rule_set is None or ticket.context is None:
        return ticket.segment, False
    decision = rule_set.decide({**ticket.context, "tier": ticket.tier})
    return decision.segment, bool(decision.failed)
