"""The platform's side of a ticket: it reports that the customer replied, on the tickets
it posted only (another platform's ticket is answered as an unknown id). The ticket's
clocks resume (services/core/lifecycle.py). Within the
platform key's rate limit, the budget its intake posts spend too."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import Field

from services.core import auth, http, request_bodies
from services.router import bootstrap, intake_policy, service
from services.router.intake import (
    RATE_LIMITED,
    REPORT_IN_FLIGHT,
    UNAVAILABLE,
    CorrelationId,
    ReportAccepted,
    ReportIdempotencyKey,
    TicketId,
    refused,
    report_key,
)

api = APIRouter(prefix="/v1/tickets", tags=["tickets"])


class CustomerReply(request_bodies.RequestBody):
    """The customer answered (never the reply's text: the router keeps no content)."""

    occurred_at: http.Timestamp | None = Field(
        default=None, description="When the customer replied (RFC 3339 with offset),"
                                  " between the ticket's receipt and now ("
                                  f"{intake_policy.SKEW_NOTE}); default: now")


@api.post("/{ticket_id}/customer-replies", status_code=202, response_model=ReportAccepted,
          responses={**UNAVAILABLE, **REPORT_IN_FLIGHT, **RATE_LIMITED, 404: {
              "description": "`not_found`: no ticket by this id that this platform posted"
                             " (another platform's is answered alike)"}})
async def customer_replied(ticket_id: TicketId, reply: CustomerReply,
                           router: bootstrap.RouterContext, platform: auth.RateLimitedPlatform,
                           correlation_id: CorrelationId = None,
                           idempotency_key: ReportIdempotencyKey = None,
                           ) -> ReportAccepted | JSONResponse:
    """The customer replied on a ticket this platform posted: its service-level clocks
    resume, and a next-response clock starts once it has had its first response."""
    recorded = await service.customer_replied(
        ticket_id, occurred_at=reply.occurred_at, platform=platform,
        correlation_id=correlation_id, routed=router.routed, publisher=router.publisher,
        now=datetime.now(UTC), key=report_key(idempotency_key, router))
    if isinstance(recorded, service.Refused):
        return refused(recorded, router, "events")
    return ReportAccepted(ticket_id=ticket_id, event_id=recorded.event_id, type=_TYPE)


_TYPE: Literal["customer_replied"] = "customer_replied"
