"""Lifecycle events of a ticket, published on `tickets.events`.

The pipeline reports `received`, `segmented` and `routed`; departments report
`picked_up`, `responded`, `waiting_on_customer` and `resolved` over the router's HTTP
API, which checks that the ticket is theirs and the time plausible; the platform that
posted a ticket reports `customer_replied` on it. The router's service-level clocks add
`deadlines_changed` (after a report that pauses, resumes, starts or stops a clock),
`target_warning` (a share of a target spent) and `escalated` with a `target` and a
`level` (1: breached, 2: still unanswered later); a department's or an admin's priority
change adds `priority_changed` with the new priority and deadlines. The data is small on
purpose: ids, department, segment and times, never the ticket's text or the customer's
personal data.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

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
    ESCALATED = "ticket.escalated"  # a target breached (level 1) or still so (2)
    TRANSFERRED = "ticket.transferred"  # handed by one department to another
    WAITING_ON_CUSTOMER = "ticket.waiting_on_customer"  # a department: clocks pause
    CUSTOMER_REPLIED = "ticket.customer_replied"  # the ticket's platform: clocks resume
    DEADLINES_CHANGED = "ticket.deadlines_changed"  # clocks paused, resumed or (re)started
    TARGET_WARNING = "ticket.target_warning"  # a share of a target spent, not answered
    PRIORITY_CHANGED = "ticket.priority_changed"  # new priority, clocks recomputed


DEPARTMENT_REPORTS = (
    TicketEventType.PICKED_UP,
    TicketEventType.RESPONDED,
    TicketEventType.WAITING_ON_CUSTOMER,
    TicketEventType.RESOLVED,
)
PLATFORM_REPORTS = (TicketEventType.CUSTOMER_REPLIED,)
# What moves a routed ticket's state, as the router follows it.
REPORTS = (*DEPARTMENT_REPORTS, *PLATFORM_REPORTS)

# The only writer of each lifecycle event: anything else on the topic (a department's
# Kafka user, a careless client) is not trusted, whatever it claims.
WRITTEN_BY: dict[TicketEventType, str] = {
    TicketEventType.RECEIVED: INTAKE_SOURCE,
    **{report: INTAKE_SOURCE for report in REPORTS},
    TicketEventType.SEGMENTED: SEGMENTER_SOURCE,
    TicketEventType.ROUTED: ROUTER_SOURCE,
    TicketEventType.ESCALATED: ROUTER_SOURCE,
    TicketEventType.TRANSFERRED: ROUTER_SOURCE,
    TicketEventType.DEADLINES_CHANGED: ROUTER_SOURCE,
    TicketEventType.TARGET_WARNING: ROUTER_SOURCE,
    TicketEventType.PRIORITY_CHANGED: ROUTER_SOURCE,
}

# The sources the pipeline writes lifecycle events as: the only ones an error quotes.
_SOURCES = frozenset(WRITTEN_BY.values())

ClockTarget = Literal["first_response", "next_response", "resolution"]
# The longest reason a ticket went where it went (route, fallback, ..., transfer).
MAX_ROUTING_REASON = 32
# Escalation levels: 1 on a breach, 2 still unanswered later (second_escalation).
ESCALATION_LEVELS = (1, 2)


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
    reason: Annotated[str, Field(max_length=MAX_ROUTING_REASON)] | None = None
    from_department: tickets.Name | None = None  # escalated and transferred events
    priority: tickets.Priority | None = None
    first_response_deadline: AwareDatetime | None = None
    platform: tickets.Platform | None = None  # on received and routed events
    # Service-level clocks: each target's deadline (null while paused or stopped) on
    # routed, transferred, priority_changed and deadlines_changed events; the target
    # concerned and its escalation level on target_warning and escalated events.
    deadlines: dict[ClockTarget, AwareDatetime | None] | None = None
    paused: bool | None = None
    target: ClockTarget | None = None
    level: Annotated[int, Field(ge=ESCALATION_LEVELS[0], le=ESCALATION_LEVELS[-1])] | None = None
    outcomes: dict[Annotated[str, Field(max_length=40)], Literal["met", "missed"]] | None = None
    # On deadlines_changed: the first-response clock's last change its deadlines were
    # worked out as of (clocks.last_change); a later-published event may be older than a
    # hand-over's (clock_events.py). None: not told (events from before December 2026).
    as_of: AwareDatetime | None = None


def read(event: envelope.Event) -> TicketEvent:
    """The lifecycle event a record holds, if the pipeline wrote it; raises
    UntrustedEvent (unknown type, or a source that does not write it) or
    pydantic's ValidationError (data that breaks the contract)."""
    try:
        kind = TicketEventType(event.type)
    except ValueError:
        # The sender's text, which may carry personal data: told by its length alone.
        raise UntrustedEvent(f"unknown lifecycle event type ({len(event.type)} characters,"
                             " not shown)") from None
    if event.source != WRITTEN_BY[kind]:
        source = (repr(event.source) if event.source in _SOURCES
                  else f"an unknown source ({len(event.source)} characters, not shown)")
        raise UntrustedEvent(f"{kind} is written by {WRITTEN_BY[kind]} only, not by {source}")
    lifecycle = TicketEvent.model_validate(event.data)
    if lifecycle.type != kind or lifecycle.ticket_id != event.ticket_id:
        raise UntrustedEvent("the event's data does not match its ce_type and ce_ticketid")
    return lifecycle


def correlation_of(ticket_id: str, *, stored: str | None,
                   given: str | None = None) -> str:
    """The correlation id an event about a routed ticket goes out under: the one its
    request gave (`X-Correlation-ID`), else the one the router keeps with the ticket
    (its platform's, from the intake), else the ticket's id (`stored` None: routed
    before migration 0011, or no ticket read), so that the platform's callbacks carry
    the id it gave from end to end."""
    return given or stored or ticket_id


def as_envelope(lifecycle: TicketEvent, correlation_id: str, source: str, *,
                event_id: str | None = None) -> envelope.Event:
    """The lifecycle event as a CloudEvent (`event_id`: its id, given when a retry must
    publish the same; default: a new one)."""
    return envelope.Event(
        type=lifecycle.type,
        source=source,
        ticket_id=lifecycle.ticket_id,
        correlation_id=correlation_id,
        data=lifecycle.model_dump(mode="json", exclude_none=True),
        time=lifecycle.occurred_at,
        id=envelope.new_id() if event_id is None else event_id,
    )
