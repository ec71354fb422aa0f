"""Putting a routed ticket into a department's queue: first routing, escalation and
transfer all dispatch the same way, and all leave a step in the ticket's trace."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from services.core import envelope, events, kafka, topics

SOURCE = events.ROUTER_SOURCE

QueueFor = Callable[[str, int | None], str]


def default_queue(department: str, _priority: int | None) -> str:
    return topics.department_queue(department)


def redispatch(payload: dict[str, Any], *, department: str, reason: str,
               from_department: str, event_type: events.TicketEventType, now: datetime,
               correlation_id: str, queue_for: QueueFor = default_queue,
               step: dict[str, Any], details: dict[str, Any] | None = None,
               ) -> tuple[dict[str, Any], list[kafka.Output]]:
    """A ticket handed on (escalated or transferred): the same ticket, a new department;
    `details` go on its lifecycle event (the clocks' deadlines, an escalation's target
    and level)."""
    routing = {**payload.get("routing", {}), "department": department, "reason": reason,
               "routed_at": now.isoformat()}
    trace = [*payload.get("trace", []), step]
    updated = {**payload, "routing": routing, "trace": trace}
    ticket_id = str(payload["ticket_id"])
    priority = routing.get("priority")
    lifecycle = events.TicketEvent(
        ticket_id=ticket_id, type=event_type, occurred_at=now,
        department=department, from_department=from_department,
        segment=payload.get("segmentation", {}).get("segment"), reason=reason,
        priority=priority if isinstance(priority, int) else None, **(details or {}))
    return updated, [
        kafka.Output(queue_for(department, priority if isinstance(priority, int) else None),
                     str(payload["customer_id"]),
                     envelope.Event(type=events.TicketEventType.ROUTED, source=SOURCE,
                                    ticket_id=ticket_id, correlation_id=correlation_id,
                                    data=updated, time=now)),
        kafka.Output(topics.EVENTS, ticket_id,
                     events.as_envelope(lifecycle, correlation_id, SOURCE)),
    ]
