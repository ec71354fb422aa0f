"""Lifecycle events of a ticket, published on `tickets.events`.

The pipeline reports `received`, `segmented` and `routed`; departments report
`picked_up`, `responded` and `resolved`. The data is small on purpose: ids, department,
segment and times, never the ticket's text or the customer's personal data.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict

from services.core import envelope


class TicketEventType(StrEnum):
    RECEIVED = "ticket.received"
    SEGMENTED = "ticket.segmented"
    ROUTED = "ticket.routed"
    PICKED_UP = "ticket.picked_up"
    RESPONDED = "ticket.responded"
    RESOLVED = "ticket.resolved"
    ESCALATED = "ticket.escalated"  # no first response by the deadline; redispatched
    TRANSFERRED = "ticket.transferred"  # handed by one department to another


DEPARTMENT_REPORTS = (
    TicketEventType.PICKED_UP,
    TicketEventType.RESPONDED,
    TicketEventType.RESOLVED,
)


class TicketEvent(BaseModel):
    """The data of one lifecycle event."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    ticket_id: str
    type: TicketEventType
    occurred_at: datetime
    received_at: datetime | None = None
    department: str | None = None
    segment: str | None = None
    # Why the ticket went where it went: route, fallback, overflow, after_hours,
    # escalation or transfer (on routed, escalated and transferred events).
    reason: str | None = None
    from_department: str | None = None  # escalated and transferred events
    priority: int | None = None
    first_response_deadline: datetime | None = None


def as_envelope(lifecycle: TicketEvent, correlation_id: str, source: str) -> envelope.Event:
    return envelope.Event(
        type=lifecycle.type,
        source=source,
        ticket_id=lifecycle.ticket_id,
        correlation_id=correlation_id,
        data=lifecycle.model_dump(mode="json", exclude_none=True),
        time=lifecycle.occurred_at,
    )
