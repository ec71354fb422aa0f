"""Putting a routed ticket into a department's queue: first routing, escalation and
transfer all dispatch the same way, and all leave a step in the ticket's trace."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from services.core import envelope, events, kafka, tickets, topics

SOURCE = events.ROUTER_SOURCE

QueueFor = Callable[[str, int | None], str]


def default_queue(department: str, _priority: int | None) -> str:
    return topics.department_queue(department)


def redispatch(ticket: tickets.RoutedTicket, *, department: str, reason: str,
               from_department: str, event_type: events.TicketEventType, now: datetime,
               correlation_id: str, queue_for: QueueFor = default_queue,
               details: dict[str, Any] | None = None,
               also: Sequence[dict[str, Any]] = (),
               ) -> tuple[tickets.RoutedTicket, list[kafka.Output]]:
    """A ticket handed on (escalated or transferred): the same ticket, a new department;
    `details` go on its lifecycle event (the clocks' deadlines, an escalation's target
    and level). `also`: the details of more lifecycle events of the same hand-over, after
    it (an escalation of several targets at once: an event per target), the ticket put
    in the new department's queue once."""
    priority = ticket.routing.priority
    queue = queue_for(department, priority)
    deadlines = (details or {}).get("deadlines") or {}
    handed = ticket.handed_to(department, reason=reason, at=now, queue=queue,
                              first_response_deadline=deadlines.get("first_response"))
    lifecycle = [events.TicketEvent(
        ticket_id=ticket.ticket_id, type=event_type, occurred_at=now,
        department=department, from_department=from_department,
        segment=ticket.segmentation.segment, reason=reason, priority=priority, **each)
        for each in (details or {}, *also)]
    return handed, [
        queued(queue, ticket, handed.model_dump(mode="json"), correlation_id, now),
        *(kafka.Output(topics.EVENTS, ticket.ticket_id,
                       events.as_envelope(event, correlation_id, SOURCE))
          for event in lifecycle),
    ]


def queued(lane: str, ticket: tickets.SegmentedTicket, data: dict[str, Any],
           correlation_id: str, at: datetime, event_id: str | None = None) -> kafka.Output:
    """The ticket's record on a department's lane (`data`: the routed ticket as JSON)."""
    return kafka.Output(lane, ticket.customer_id, envelope.Event(
        type=events.TicketEventType.ROUTED, source=SOURCE, ticket_id=ticket.ticket_id,
        correlation_id=correlation_id, data=data, time=at,
        id=envelope.new_id() if event_id is None else event_id))
