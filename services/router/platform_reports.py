"""The platform's side of a ticket: it reports that the customer replied, on the tickets
it posted only (another platform's ticket is answered as an unknown id). The ticket's
clocks resume (services/core/lifecycle.py). Within the platform key's rate limit, the
budget its intake posts spend too. A platform has its ticket's id from the 202, before
the ticket is routed: until then, 409 `not_routed_yet` with Retry-After; a ticket of its
that a stage dead-lettered, 409 `held` until an operator replays it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import Field

from services.core import auth, http, request_bodies
from services.core.settings import Settings
from services.router import bootstrap, intake_policy, service
from services.router.intake import (
    HELD,
    RATE_LIMITED,
    REPORT_IN_FLIGHT,
    UNAVAILABLE,
    CorrelationId,
    ReportAccepted,
    ReportIdempotencyKey,
    TicketId,
    refused,
    report_key,
    sent_once,
)

api = APIRouter(prefix="/v1/tickets", tags=["tickets"])


class CustomerReply(request_bodies.RequestBody):
    """The customer answered (never the reply's text: the router keeps no content)."""

    occurred_at: http.Timestamp | None = Field(
        default=None, description="When the customer replied (RFC 3339 with offset),"
                                  " between the ticket's receipt and now ("
                                  f"{intake_policy.SKEW_NOTE}); default: now")


_NOT_ROUTED_YET = ("`not_routed_yet`: the intake issued the ticket's id lately, and no"
                   " ticket is routed by it yet (a ticket accepted is on its way to its"
                   " department); retry after Retry-After")
_REPLY_CONFLICTS: dict[int | str, dict[str, Any]] = {409: {
    **REPORT_IN_FLIGHT[409],
    "description": f"{REPORT_IN_FLIGHT[409]['description']}; or {_NOT_ROUTED_YET}; or"
                   f" {HELD}"}}
_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {
    "description": "`not_found`: no ticket by this id that this platform posted (another"
                   " platform's is answered alike), and none on its way"}}


@api.post("/{ticket_id}/customer-replies", status_code=202, response_model=ReportAccepted,
          responses={**UNAVAILABLE, **_REPLY_CONFLICTS, **_NOT_FOUND, **RATE_LIMITED})
async def customer_replied(ticket_id: TicketId, reply: CustomerReply,
                           router: bootstrap.RouterContext, platform: auth.RateLimitedPlatform,
                           request: Request, correlation_id: CorrelationId = None,
                           idempotency_key: ReportIdempotencyKey = None,
                           ) -> ReportAccepted | JSONResponse:
    """The customer replied on a ticket this platform posted: its service-level clocks
    resume, and a next-response clock starts once it has had its first response."""
    sent_once(request, correlation_id, idempotency_key)
    recorded = await service.customer_replied(
        ticket_id, occurred_at=reply.occurred_at, platform=platform,
        correlation_id=correlation_id, routed=router.routed, held=router.held,
        publisher=router.publisher, now=datetime.now(UTC),
        key=report_key(idempotency_key, router))
    if isinstance(recorded, service.Refused):
        if recorded.refusal is service.Refusal.NOT_ROUTED_YET:
            return _retry_later(recorded, router.settings)
        return refused(recorded, router, "events")
    return ReportAccepted(ticket_id=ticket_id, event_id=recorded.event_id, type=_TYPE)


def _retry_later(refusal: service.Refused, settings: Settings) -> JSONResponse:
    """409 with Retry-After: the same request may well be taken then."""
    return JSONResponse(status_code=409,
                        headers={"Retry-After": str(settings.retry_after_seconds)},
                        content={"error": refusal.error, "detail": refusal.detail})


_TYPE: Literal["customer_replied"] = "customer_replied"
