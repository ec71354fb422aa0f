"""The intake API: support platforms post tickets and departments report on them."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Path, Request
from fastapi.responses import JSONResponse
from prometheus_client import Counter
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from services.core import envelope, events, kafka, tickets, topics

logger = logging.getLogger(__name__)
SOURCE = "/services/router/intake"

TICKETS_ACCEPTED = Counter(
    "routing_intake_tickets_accepted_total", "Tickets acknowledged to callers (durably in Kafka)",
    ["channel"],
)
INTAKE_UNAVAILABLE = Counter(
    "routing_intake_unavailable_total", "Requests answered 503 because Kafka did not acknowledge",
    ["endpoint"],
)


class Channel(StrEnum):
    EMAIL = "email"
    WEB = "web"
    CHAT = "chat"
    PHONE = "phone"
    SOCIAL = "social"
    API = "api"


class Kind(StrEnum):
    QUESTION = "question"
    COMPLAINT = "complaint"
    SUGGESTION = "suggestion"
    REQUEST = "request"
    INCIDENT = "incident"
    OTHER = "other"


Identifier = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:@-]+$")]


class TicketSubmission(BaseModel):
    """A ticket as a support platform posts it. Unknown fields are rejected by name."""

    model_config = ConfigDict(extra="forbid")

    customer_id: Identifier
    subject: str = Field(min_length=1, max_length=500)
    body: str = Field(max_length=50_000)
    channel: Channel
    kind: Kind | None = None
    language: str | None = Field(default=None, pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$",
                                 description="BCP 47 language tag, e.g. 'en' or 'nl-BE'")
    attributes: dict[Annotated[str, Field(max_length=64)],
                     str | int | float | bool] = Field(default_factory=dict, max_length=50)


class TicketAccepted(BaseModel):
    ticket_id: str
    status: Literal["accepted"] = "accepted"
    correlation_id: str


class DepartmentReport(BaseModel):
    """What a department reports about a ticket it handles."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["picked_up", "responded", "resolved"]
    department: str | None = Field(default=None, pattern=topics.DEPARTMENT_NAME.pattern)
    occurred_at: AwareDatetime | None = Field(
        default=None, description="When it happened (RFC 3339 with offset); default: now")


class ReportAccepted(BaseModel):
    ticket_id: str
    event_id: str
    type: str
    status: Literal["accepted"] = "accepted"


def get_publisher(request: Request) -> kafka.Publisher:
    publisher: kafka.Publisher = request.app.state.publisher
    return publisher


PublisherDep = Annotated[kafka.Publisher, Depends(get_publisher)]
CorrelationId = Annotated[str | None, Header(alias="X-Correlation-ID", max_length=128)]
TicketId = Annotated[str, Path(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$")]

UNAVAILABLE: dict[int | str, dict[str, Any]] = {
    503: {"description": "Kafka did not acknowledge; retry after Retry-After"}}

api = APIRouter(prefix="/v1", tags=["tickets"])


def _unavailable(request: Request, endpoint: str) -> JSONResponse:
    INTAKE_UNAVAILABLE.labels(endpoint).inc()
    retry_after = request.app.state.settings.retry_after_seconds
    return JSONResponse(
        status_code=503,
        headers={"Retry-After": str(retry_after)},
        content={"error": "unavailable",
                 "detail": "the ticket store (Kafka) did not acknowledge; nothing was accepted,"
                           " retry later"},
    )


@api.post("/tickets", status_code=202, response_model=TicketAccepted, responses=UNAVAILABLE)
async def submit_ticket(
    submission: TicketSubmission,
    request: Request,
    publisher: PublisherDep,
    correlation_id: CorrelationId = None,
) -> TicketAccepted | JSONResponse:
    """Accept a ticket: answered 202 only once Kafka holds it."""
    received_at = datetime.now(UTC)
    ticket = tickets.Ticket(ticket_id=str(uuid.uuid4()), received_at=received_at,
                            **submission.model_dump())
    correlation = correlation_id or ticket.ticket_id
    received = envelope.Event(
        type=events.TicketEventType.RECEIVED, source=SOURCE, ticket_id=ticket.ticket_id,
        correlation_id=correlation, data=ticket.model_dump(mode="json"), time=received_at,
    )
    lifecycle = events.TicketEvent(ticket_id=ticket.ticket_id,
                                   type=events.TicketEventType.RECEIVED,
                                   occurred_at=received_at, received_at=received_at)
    try:
        await publisher.publish([
            kafka.Output(topics.INCOMING, ticket.customer_id, received),
            kafka.Output(topics.EVENTS, ticket.ticket_id,
                         events.as_envelope(lifecycle, correlation, SOURCE)),
        ])
    except kafka.PublishFailed as exc:
        logger.warning("ticket not accepted: Kafka unavailable", extra={"error": str(exc)})
        return _unavailable(request, "tickets")
    TICKETS_ACCEPTED.labels(ticket.channel).inc()
    logger.info("ticket accepted", extra={"ticket_id": ticket.ticket_id,
                                          "correlation_id": correlation})
    return TicketAccepted(ticket_id=ticket.ticket_id, correlation_id=correlation)


@api.post("/tickets/{ticket_id}/events", status_code=202, response_model=ReportAccepted,
          responses=UNAVAILABLE)
async def report_event(
    ticket_id: TicketId,
    report: DepartmentReport,
    request: Request,
    publisher: PublisherDep,
    correlation_id: CorrelationId = None,
) -> ReportAccepted | JSONResponse:
    """A department reports that it picked up, responded to or resolved a ticket."""
    lifecycle = events.TicketEvent(
        ticket_id=ticket_id,
        type=events.TicketEventType(f"ticket.{report.type}"),
        occurred_at=report.occurred_at or datetime.now(UTC),
        department=report.department,
    )
    event = events.as_envelope(lifecycle, correlation_id or ticket_id, SOURCE)
    try:
        await publisher.publish([kafka.Output(topics.EVENTS, ticket_id, event)])
    except kafka.PublishFailed:
        return _unavailable(request, "events")
    return ReportAccepted(ticket_id=ticket_id, event_id=event.id, type=report.type)
