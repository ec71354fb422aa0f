"""A routed ticket handed on or re-prioritised: a transfer (a department or an admin
asks), escalation (the timer finds it unanswered past a deadline), a priority change.
Each publishes first and records after: a crash in between repeats it rather than
losing it."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from services.core import access, events, kafka, tickets, topics, unknown_departments
from services.router import (
    clock_watch,
    dispatch,
    missing_lanes,
    ports,
    routing,
    service_clocks,
)
from services.router import priority as lanes
from services.router.models import RoutedTicketRow
from services.router.service import acting_for, known, verdicts
from services.router.service.verdicts import Refusal, Refused

# A hand-over or priority change made after the notices it waited for (_after_notices) is
# stamped this much later than they, so that every reader orders them so: the metrics'
# timeline orders hand-overs by time.
AFTER_NOTICES = timedelta(microseconds=1)


@dataclass(frozen=True)
class Transferred:
    ticket_id: str
    department: str


async def transfer(ticket_id: str, *, to_department: str, reason: str,
                   from_department: str | None, principal: access.Principal,
                   routed: ports.Routed, publisher: ports.Publisher,
                   table: routing.RoutingTable, queue_for: dispatch.QueueFor,
                   held: ports.Held, now: datetime,
                   claim_for: timedelta = ports.HANDOVER_CLAIM) -> Transferred | Refused:
    """Hand a ticket to another department of `table`: its clocks keep the time they
    spent and were paused, and count the rest in the new department's hours. A
    department hands over only tickets it has (`from_department`, if given, is checked).
    The ticket is claimed for the hand-over first (`claim_for`: longer than a publish),
    as it was read, so that another transfer or an escalation at the same moment does
    not put it in a second queue. A `from_department` that is no department of `table`
    is refused first (acting_for); a ticket not routed, as known.routed_ticket says
    (held, to an admin); a department whose lanes the router could not make is refused,
    the ticket left where it is (missing_lanes)."""
    unknown = await acting_for.refused(from_department, "body.from_department",
                                       principal=principal, table=table, routed=routed,
                                       ticket_id=ticket_id)
    if unknown is not None:
        return unknown
    read = await _after_notices(ticket_id, principal=principal, routed=routed, held=held,
                                publisher=publisher, table=table, queue_for=queue_for,
                                now=now, claim_for=claim_for,
                                closed=verdicts.closed_to_transfer)
    if isinstance(read, Refused):
        return read
    row, now = read
    if from_department and from_department != row.department:
        return Refused(Refusal.CONFLICT, f"the ticket is with {row.department!r}",
                       "not_yours")
    if table.lacks(to_department):
        return Refused(Refusal.INVALID,
                       unknown_departments.answer(to_department, table.departments),
                       field="body.to_department")
    if to_department == row.department:
        return Refused(Refusal.CONFLICT, f"the ticket is already with {row.department!r}:"
                       " transfer it to another department", "same_department")
    new_calendar = table.policy(to_department).calendar

    def move(clocks: service_clocks.TicketClocks,
             department: str) -> service_clocks.TicketClocks:
        # What the clocks spent stays; the rest counts in the new department's hours.
        return service_clocks.handed_over(clocks, now, table.policy(department).calendar,
                                          new_calendar)

    details = {} if row.service_clocks is None else {"deadlines": move(
        service_clocks.from_json(row.service_clocks), row.department).deadlines()}
    step = {"at": now.isoformat(), "step": "transferred", "from": row.department,
            "to": to_department, "reason": reason,
            **{name: {target: _iso(deadline) for target, deadline in deadlines.items()}
               for name, deadlines in details.items()}}
    ticket, outputs = dispatch.redispatch(
        tickets.RoutedTicket.model_validate(row.payload), department=to_department,
        reason="transfer", from_department=row.department,
        event_type=events.TicketEventType.TRANSFERRED, now=now,
        correlation_id=events.correlation_of(ticket_id, stored=row.correlation_id),
        queue_for=queue_for, details=details)
    try:
        claim = await ports.publish_claimed(routed, publisher, row, outputs, hold=claim_for)
    except kafka.PublishFailed:
        return verdicts.UNAVAILABLE
    except missing_lanes.LanesMissing as missing:
        return verdicts.lanes_missing(missing, held_by=row.department)
    if claim is None:
        return verdicts.HANDOVER_IN_FLIGHT
    await ports.record_published(functools.partial(
        routed.record_handover, ticket_id, department=to_department, steps=[step],
        ticket=ticket, now=now, move_clocks=move, claim=claim),
        claim=claim, ticket_id=ticket_id)
    return Transferred(ticket_id, to_department)


@dataclass(frozen=True)
class Reprioritised:
    ticket_id: str
    priority: int
    deadlines: dict[str, str | None] | None  # None: a ticket without clocks


async def change_priority(ticket_id: str, *, priority: int, reason: str,
                          principal: access.Principal, routed: ports.Routed,
                          publisher: ports.Publisher, table: routing.RoutingTable,
                          held: ports.Held, now: datetime,
                          claim_for: timedelta = ports.HANDOVER_CLAIM,
                          queue_for: dispatch.QueueFor = lanes.queue_for,
                          ) -> Reprioritised | Refused:
    """Give a ticket another priority: it takes the new priority's targets where the
    table's `priority_targets` gives them, and its clocks keep the time they spent and
    were paused. It stays where it is in its department's queue. The ticket is claimed
    as it was read, as a hand-over claims it, while the change is published: a ticket a
    hand-over holds is refused, and a hand-over meanwhile is refused, else the change
    would be published for the department the ticket leaves, and the hand-over's lane
    would be the old priority's. `queue_for`: the lanes of an escalation it waits for
    (_after_notices). A ticket not routed is refused as known.routed_ticket says (held,
    to an admin)."""
    read = await _after_notices(
        ticket_id, principal=principal, routed=routed, held=held, publisher=publisher,
        table=table,
        queue_for=queue_for, now=now, claim_for=claim_for,
        closed=lambda row: verdicts.closed_to_priority_change(row, principal))
    if isinstance(read, Refused):
        return read
    row, now = read
    if row.priority == priority:
        return Refused(Refusal.CONFLICT, f"the ticket has priority {row.priority}",
                       "same_priority")
    given = table.priority_targets.get(priority)

    def move(clocks: service_clocks.TicketClocks,
             department: str) -> service_clocks.TicketClocks:
        return service_clocks.reprioritised(clocks, now, table.policy(department).calendar,
                                            given)

    after = None if row.service_clocks is None else move(
        service_clocks.from_json(row.service_clocks), row.department)
    shown = None if after is None else {target: _iso(deadline)
                                        for target, deadline in after.deadlines().items()}
    changed = events.TicketEvent(
        ticket_id=ticket_id, type=events.TicketEventType.PRIORITY_CHANGED, occurred_at=now,
        department=row.department, segment=row.segment, priority=priority,
        deadlines=None if after is None else after.deadlines(),
        paused=None if after is None else after.paused)
    try:
        claim = await ports.publish_claimed(routed, publisher, row, [kafka.Output(
            topics.EVENTS, ticket_id, events.as_envelope(
                changed, events.correlation_of(ticket_id, stored=row.correlation_id),
                dispatch.SOURCE))], hold=claim_for)
    except kafka.PublishFailed:
        return verdicts.UNAVAILABLE
    if claim is None:
        return verdicts.HANDOVER_IN_FLIGHT
    step: dict[str, Any] = {"at": now.isoformat(), "step": "priority_changed",
                            "from": row.priority, "to": priority, "reason": reason,
                            **({} if shown is None else {"deadlines": shown})}
    await ports.record_published(functools.partial(
        routed.record_priority_change, ticket_id, priority=priority, step=step,
        move_clocks=move, claim=claim), claim=claim, ticket_id=ticket_id)
    return Reprioritised(ticket_id, priority, shown)


async def escalate_due(routed: ports.Routed, publisher: ports.Publisher, *,
                       table: routing.RoutingTable, queue_for: dispatch.QueueFor,
                       now: datetime, claim_for: timedelta = ports.HANDOVER_CLAIM) -> int:
    """Every notice due by `now` (the escalation timer, once per fleet): tickets without
    clocks past their first-response deadline are escalated once; tickets with clocks get
    their warnings and escalations by level. Returns how many were sent."""
    return await clock_watch.watch_clocks(routed, publisher, table=table,
                                          queue_for=queue_for, now=now, claim_for=claim_for)


async def _after_notices(ticket_id: str, *, principal: access.Principal,
                         routed: ports.Routed, held: ports.Held, publisher: ports.Publisher,
                         table: routing.RoutingTable, queue_for: dispatch.QueueFor,
                         now: datetime, claim_for: timedelta,
                         closed: Callable[[RoutedTicketRow], Refused | None],
                         ) -> tuple[RoutedTicketRow, datetime] | Refused:
    """The ticket a hand-over or a priority change asked at `now` is judged on, and the
    moment it is made at: once the notices its clocks owe by then are sent
    (service_clocks.owes_notice; the clock watch had not come to them), for the
    department that held it, just after them; refused if `closed` to the change (a
    resolved ticket, a trace at its ceiling). A ticket not routed is refused as
    known.routed_ticket says. A caller who may not act for the ticket sends none; one
    whose request so escalated the ticket out of its department is told so
    (verdicts.escalated_away), as one whose department it was escalated out of before is
    (verdicts.acts_for_own)."""
    row = await known.routed_ticket(ticket_id, principal=principal, routed=routed,
                                    held=held, now=now)
    if isinstance(row, Refused):
        return row
    if not principal.may_act_for(row.department):
        return verdicts.acts_for_own(row, principal)
    try:
        sent = await clock_watch.send_owed(routed, publisher, row, table=table,
                                           queue_for=queue_for, now=now,
                                           claim_for=claim_for)
    except kafka.PublishFailed:
        return verdicts.UNAVAILABLE
    if sent is None:
        return verdicts.HANDOVER_IN_FLIGHT
    judged: RoutedTicketRow | None = row
    if sent.postponed and not sent.count:  # its next check moved on: the claim's to compare
        judged = await routed.get(ticket_id)
        if judged is None:
            return verdicts.not_found(ticket_id)
    if sent.count:
        asked_at = now
        judged, now = await routed.get(ticket_id), now + AFTER_NOTICES
        if judged is None:
            return verdicts.not_found(ticket_id)
        if not principal.may_act_for(judged.department):  # escalated out of its own
            return verdicts.escalated_away(sent.escalated, asked_at=asked_at,
                                           department=judged.department) \
                if sent.escalated else verdicts.acts_for_own(judged, principal)
    assert judged is not None
    refused = closed(judged)
    return (judged, now) if refused is None else refused


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()
