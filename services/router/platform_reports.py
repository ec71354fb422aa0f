"""The platform's side of a ticket: it reports that the customer replied, on the tickets
it posted only. The ticket's clocks resume (services/core/lifecycle.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from services.core import auth, events, http, kafka, topics
from services.router.intake import (
    UNAVAILABLE,
    CorrelationId,
    PublisherDep,
    ReportAccepted,
    TicketId,
    ensure_plausible_time,
    unavailable,
)

api = APIRouter(prefix="/v1/tickets", tags=["tickets"])


class CustomerReply(BaseModel):
    """The customer answered (never the reply's text: the router keeps no content)."""

    model_config = ConfigDict(extra="forbid")

    occurred_at: http.Timestamp | None = Field(
        default=None, description="When the customer replied (RFC 3339 with offset);"
                                  " default: now")


@api.post("/{ticket_id}/customer-replies", status_code=202, response_model=ReportAccepted,
          responses={**UNAVAILABLE, 403: {"description": "Not a ticket this platform posted"}})
async def customer_replied(ticket_id: TicketId, reply: CustomerReply, request: Request,
                           publisher: PublisherDep, platform: auth.Platform,
                           correlation_id: CorrelationId = None,
                           ) -> ReportAccepted | JSONResponse:
    """The customer replied on a ticket this platform posted: its service-level clocks
    resume, and a next-response clock starts once it has had its first response."""
    row = await request.app.state.routed.get(ticket_id)
    if row is None:
        raise HTTPException(404, detail={"error": "not_found",
                                         "detail": f"no routed ticket {ticket_id!r}"})
    if row.platform != platform.subject:
        raise auth.Refused(403, "forbidden", "a platform reports on the tickets it posted"
                                             " only")
    ensure_plausible_time(row, reply.occurred_at)
    lifecycle = events.TicketEvent(
        ticket_id=ticket_id, type=events.TicketEventType.CUSTOMER_REPLIED,
        occurred_at=reply.occurred_at or datetime.now(UTC), platform=platform.subject)
    event = events.as_envelope(lifecycle, correlation_id or ticket_id, events.INTAKE_SOURCE)
    try:
        await publisher.publish([kafka.Output(topics.EVENTS, ticket_id, event)])
    except kafka.PublishFailed:
        return unavailable(request, "events")
    return ReportAccepted(ticket_id=ticket_id, event_id=event.id, type=_TYPE)


_TYPE: Literal["customer_replied"] = "customer_replied"
