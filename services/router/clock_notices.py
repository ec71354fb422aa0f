"""What a check of a ticket's clocks sends (service_clocks.owed), built from the ticket
as read: its warnings (`warning`), then one escalation (`escalation`) of every clock
breached or at its second level, together, an event and a trace step per clock, to where
service_clocks.escalation says, with the marks and rebase its record makes. The clock
watch (clock_watch.py) has them published under a claim and recorded (clock_sending.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import pydantic

from services.core import events, kafka, tickets, topics
from services.router import clocks, dispatch, escalation_targets, routing, service_clocks
from services.router.models import RoutedTicketRow

logger = logging.getLogger(__name__)

# How a record changes the clocks it finds, given the department holding the ticket.
ClockChange = Callable[[service_clocks.TicketClocks, str], service_clocks.TicketClocks]


@dataclass(frozen=True)
class Escalated:
    """A clock escalated by a check: its target, its level, the moment it fell due (the
    deadline it missed; its second level's moment), from and to which department (the
    same: flagged where it is)."""

    target: clocks.Target
    level: int
    due: datetime | None
    from_department: str
    to_department: str


def warning(row: RoutedTicketRow, clock: clocks.Clock, state: service_clocks.TicketClocks,
             now: datetime) -> kafka.Output:
    """The event of `clock`'s warning, with the ticket's deadlines as they stand."""
    event = events.TicketEvent(
        ticket_id=row.ticket_id, type=events.TicketEventType.TARGET_WARNING, occurred_at=now,
        department=row.department, segment=row.segment, target=clock.target,
        deadlines=state.deadlines())
    return kafka.Output(topics.EVENTS, row.ticket_id, events.as_envelope(
        event, events.correlation_of(row.ticket_id, stored=row.correlation_id), dispatch.SOURCE))


def warned(warnings: tuple[clocks.Clock, ...]) -> ClockChange:
    """The clocks with `warnings` marked sent (as they stand when recorded)."""
    def change(current: service_clocks.TicketClocks,
               department: str) -> service_clocks.TicketClocks:
        for clock in warnings:
            current = current.with_clock(clocks.warned(current.as_now(clock)))
        return current
    return change


@dataclass(frozen=True)
class Escalation:
    """One hand-over escalating what is owed: published (`outputs`), then recorded."""

    to: str  # where the ticket goes (where it is: flagged there)
    outputs: list[kafka.Output]
    steps: list[dict[str, object]]
    ticket: tickets.RoutedTicket | None  # its copy there (None: kept as it is)
    move: ClockChange  # the clocks marked and rebased
    escalated: tuple[Escalated, ...]
    # The clocks marked alone, where the ticket is: what a published escalation whose
    # record failed for the ticket's own reason records (clock_watch.checked_again_later).
    mark: ClockChange


def escalation(row: RoutedTicketRow, owed: service_clocks.Owed,
                state: service_clocks.TicketClocks, *, table: routing.RoutingTable,
                queue_for: dispatch.QueueFor, now: datetime) -> Escalation:
    """The breaches and second levels `owed`, escalated together: one hand-over, where
    service_clocks.escalation says, an event and a trace step per clock at its level."""
    try:
        ticket: tickets.RoutedTicket | None = tickets.RoutedTicket.model_validate(row.payload)
    except pydantic.ValidationError as exc:
        # Not a ticket any more (a stored copy edited by hand?): escalated where it is.
        logger.error("ticket not handed on: its stored copy is not a routed ticket",
                     extra={"ticket_id": row.ticket_id, "errors": exc.error_count()})
        ticket = None
    policy = table.policy(row.department)
    escalated = owed.escalated
    escalation = service_clocks.escalation(owed, table, row.department)
    assert escalation is not None  # called for what escalates
    second = escalation_targets.on_breach(table, row.department).second
    marks = [clocks.breached(clock, now, policy.calendar, second.after if second else None,
                             second.to if second else None)
             for clock in owed.breached] + [clocks.second_level(clock)
                                            for clock in owed.second_levels]
    levels = [1] * len(owed.breached) + [2] * len(owed.second_levels)
    target = escalation.to if ticket is not None else None
    # Why the table in force changed where it goes, if it goes there.
    why = f"; {escalation.why}" if escalation.why and target == escalation.to else ""
    new_calendar = table.policy(target).calendar if target else policy.calendar

    def mark(current: service_clocks.TicketClocks,
             _department: str) -> service_clocks.TicketClocks:
        updated = current
        for clock, marked in zip(escalated, marks, strict=True):
            updated = updated.with_clock(
                clocks.with_escalation_marks(updated.as_now(clock), marked))
        return updated

    def move(current: service_clocks.TicketClocks,
             department: str) -> service_clocks.TicketClocks:
        updated = mark(current, department)
        if target is None:
            return updated
        return service_clocks.handed_over(updated, now, table.policy(department).calendar,
                                          new_calendar)

    after = move(state, row.department)
    details = [{"target": clock.target, "level": level, "deadlines": after.deadlines()}
               for clock, level in zip(escalated, levels, strict=True)]
    steps: list[dict[str, object]] = [
        {"at": now.isoformat(), "step": "escalated", "level": level,
         "target": clock.target, "due": _iso(_due(clock, level)), "from": row.department,
         "to": target or row.department,
         "reason": (f"{clock.target} not answered by {clock.deadline.isoformat()}"
                    if level == 1 and clock.deadline else f"{clock.target} still not"
                    f" answered after its escalation") + why}
        for clock, level in zip(escalated, levels, strict=True)]
    correlation_id = events.correlation_of(row.ticket_id, stored=row.correlation_id)
    if target is None:  # nowhere to go: the event tells ops (level 2: the flag)
        outputs = [kafka.Output(topics.EVENTS, row.ticket_id, events.as_envelope(
            events.TicketEvent(
                ticket_id=row.ticket_id, type=events.TicketEventType.ESCALATED,
                occurred_at=now, department=row.department,
                from_department=row.department, segment=row.segment, reason="escalation",
                **each), correlation_id, dispatch.SOURCE)) for each in details]
    else:
        assert ticket is not None
        ticket, outputs = dispatch.redispatch(
            ticket, department=target, reason="escalation",
            from_department=row.department, event_type=events.TicketEventType.ESCALATED,
            now=now, correlation_id=correlation_id, queue_for=queue_for,
            details=details[0], also=details[1:])
    return Escalation(
        target or row.department, list(outputs), steps, ticket, move,
        tuple(Escalated(clock.target, level, _due(clock, level),
                        row.department, target or row.department)
              for clock, level in zip(escalated, levels, strict=True)), mark)


def _due(clock: clocks.Clock, level: int) -> datetime | None:
    """When an escalation of `clock` at `level` fell due: the deadline it missed, or its
    second level's moment (kept in its trace step: verdicts.escalated_from)."""
    return clock.deadline if level == 1 else clock.second_level_at


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()
