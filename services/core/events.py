"""Lifecycle events of a ticket, published on `tickets.events`.

The pipeline reports `received`, `segmented` and `routed`; departments report
`picked_up`, `responded` and `resolved` over the router's HTTP API, which checks that
the ticket is theirs and the time plausible. The data is small on purpose: ids,
department, segment and times, never the ticket's text or the customer's personal data.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from services.core import envelope, tickets

# Who writes lifecycle events: the event source of each pipeline service.
INTAKE_SOURCE = "/services/router/intake"
ROUTER_SOURCE = "/services/router"
SEGMENTER_SOURCE = "/services/segmenter"


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

# The only writer of each lifecycle event: anything else on the topic (a department's
# Kafka user, a careless client) is not trusted, whatever it claims.
WRITTEN_BY: dict[TicketEventType, str] = {
    TicketEventType.RECEIVED: INTAKE_SOURCE,
    **{report: INTAKE_SOURCE for report in DEPARTMENT_REPORTS},
    TicketEventType.SEGMENTED: SEGMENTER_SOURCE,
    TicketEventType.ROUTED: ROUTER_SOURCE,
    TicketEventType.ESCALATED: ROUTER_SOURCE,
    TicketEventType.TRANSFERRED: ROUTER_SOURCE,
}


class UntrustedEvent(ValueError):
    """A lifecycle event that the pipeline did not write: not acted upon."""


class TicketEvent(BaseModel):
    """The data of one lifecycle event."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    ticket_id: tickets.Identifier
    type: TicketEventType
    occurred_at: AwareDatetime
    received_at: AwareDatetime | None = None
    department: tickets.Name | None = None
    segment: tickets.Name | None = None
    # Why the ticket went where it went: route, fallback, refinement, overflow,
    # after_hours, escalation or transfer (on routed, escalated and transferred events).
    reason: Annotated[str, Field(max_length=32)] | None = None
    from_department: tickets.Name | None = None  # escalated and transferred events
    priority: Annotated[int, Field(ge=1, le=99)] | None = None
    first_response_deadline: AwareDatetime | None = None
    platform: tickets.Platform | None = None  # on received and routed events


def read(event: envelope.Event) -> TicketEvent:
    """The lifecycle event a record holds, if the pipeline wrote it; raises
    UntrustedEvent (unknown type, or a source that does not write it) or
    pydantic's ValidationError (data that breaks the contract)."""
    try:
        kind = TicketEventType(event.type)
    except ValueError:
        raise UntrustedEvent(f"unknown lifecycle event type {event.type[:64]!r}") from None
    if event.source != WRITTEN_BY[kind]:
        raise UntrustedEvent(f"{kind} is written by {WRITTEN_BY[kind]} only, not by"
                             f" {event.source[:64]!r}")
    lifecycle = TicketEvent.model_validate(event.data)
    if lifecycle.type != kind or lifecycle.ticket_id != event.ticket_id:
        raise UntrustedEvent("the event's data does not match its ce_type and ce_ticketid")
    return lifecycle


def as_envelope(lifecycle: TicketEvent, correlation_id: str, source: str) -> envelope.Event:
    return envelope.Event(
        type=lifecycle.type,
        source=source,
        ticket_id=lifecycle.ticket_id,
        correlation_id=correlation_id,
        data=lifecycle.model_dump(mode="json", exclude_none=True),
        time=lifecycle.occurred_at,
    )
