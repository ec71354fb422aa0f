"""The intake API: support platforms post tickets and departments report on them (the use
cases: services/router/service/; this edge maps their verdicts to answers)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Header, HTTPException, Path, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import Counter
from pydantic import BaseModel, Field

from services.core import (
    auth,
    events,
    http,
    identifiers,
    refusals,
    request_bodies,
    tickets,
    topics,
)
from services.core.settings import Settings
from services.router import bootstrap, intake_policy, service

TICKETS_ACCEPTED = Counter(
    "routing_intake_tickets_accepted_total", "Tickets acknowledged to callers (durably in Kafka)",
    ["channel"],
)
INTAKE_UNAVAILABLE = Counter(
    "routing_intake_unavailable_total", "Requests answered 503 because Kafka did not acknowledge",
    ["endpoint"],
)
for _endpoint in ("tickets", "events", "transfer", "priority"):
    INTAKE_UNAVAILABLE.labels(_endpoint)  # shown as 0 before the first failure
# Each channel's child, looked up once (and shown as 0 before its first ticket).
_ACCEPTED_ON = {channel.value: TICKETS_ACCEPTED.labels(channel.value)
                for channel in tickets.Channel}


class TicketSubmission(tickets.TicketContent, request_bodies.RequestBody):
    """A ticket as a support platform posts it: the ticket contract every stage reads,
    so that what is accepted here can be carried to a department. Unknown fields are
    rejected by name; a subject must say something (not only spaces); a language is a
    well-formed BCP 47 tag, kept in its canonical case."""

    # Here, not in the records' contract: a ticket of a blank subject, or of a language
    # that is no BCP 47 tag, accepted before is still read by the stages, not
    # dead-lettered.
    subject: Annotated[tickets.Subject, *tickets.SAYS_SOMETHING]
    language: tickets.LanguageTag | None = None


class TicketAccepted(BaseModel):
    ticket_id: str
    status: Literal["accepted"] = "accepted"
    correlation_id: str


class DepartmentReport(request_bodies.RequestBody):
    """What a department reports about a ticket it handles."""

    type: Literal["picked_up", "responded", "waiting_on_customer", "resolved"] = Field(
        description="waiting_on_customer pauses the ticket's service-level clocks until"
                    " its platform reports the customer's reply")
    department: str | None = Field(
        default=None, pattern=topics.DEPARTMENT_NAME.pattern,
        description="The department reporting (a department credential's own, checked if"
                    " given); one the routing table in force lacks, holding no open"
                    " ticket and (asked by an admin) never holding this one, is refused"
                    " 422, listing the table's departments; an admin's names the"
                    " department holding the ticket at occurred_at, else 422")
    occurred_at: http.Timestamp | None = Field(
        default=None, description="When it happened (RFC 3339 with offset); from a"
                                  " department's credential, between the ticket's"
                                  " arrival in the department and now ("
                                  f"{intake_policy.SKEW_NOTE}); default: now")


class ReportAccepted(BaseModel):
    ticket_id: str
    event_id: str
    type: str
    status: Literal["accepted"] = "accepted"


CorrelationId = Annotated[str | None, Header(
    alias="X-Correlation-ID", max_length=intake_policy.CORRELATION_ID_MAX_LENGTH,
    pattern=intake_policy.CORRELATION_ID.pattern,
    description="Carried by every record and callback of the ticket (default, and when"
                " empty: its id): printable ASCII without spaces, up to"
                f" {intake_policy.CORRELATION_ID_MAX_LENGTH} characters")]
TicketId = Annotated[str, Path(min_length=1, max_length=identifiers.MAX_LENGTH,
                               pattern=identifiers.ID.pattern)]

# Their Retry-After is documented with every 503 and 429 (http_docs).
UNAVAILABLE: dict[int | str, dict[str, Any]] = {
    503: {"description": "Kafka did not acknowledge; retry after Retry-After"}}
RATE_LIMITED: dict[int | str, dict[str, Any]] = {429: {
    "description": f"Over the credential's rate limit (`{refusals.RATE_LIMITED}`) or its"
                   f" budget of body bytes (`{refusals.BYTE_RATE_LIMITED}`,"
                   " INTAKE_BYTE_RATE_LIMIT: refused before the body is read); retry after"
                   " Retry-After"}}

api = APIRouter(prefix="/v1", tags=["tickets"])


def unavailable(settings: Settings, endpoint: str) -> JSONResponse:
    INTAKE_UNAVAILABLE.labels(endpoint).inc()
    detail = ("the ticket is not accepted and will not be delivered; retry later with the"
              " same Idempotency-Key to get the same ticket id") if endpoint == "tickets" \
        else "nothing was recorded; retry later"
    return JSONResponse(
        status_code=503,
        headers={"Retry-After": str(settings.retry_after_seconds)},
        content={"error": "unavailable",
                 "detail": f"the ticket store (Kafka) did not acknowledge in time: {detail}"},
    )


def key_reused(refusal: service.Refused) -> JSONResponse:
    """422: the Idempotency-Key was used for a different ticket or report."""
    return http.invalid([{"field": refusal.field, "type": "idempotency_key_reused",
                          "problem": refusal.detail}])


def key_in_flight(refusal: service.Refused, settings: Settings) -> JSONResponse:
    """409 with Retry-After: the Idempotency-Key's first request is still being taken."""
    return JSONResponse(status_code=409,
                        headers={"Retry-After": str(settings.retry_after_seconds)},
                        content={"error": refusal.error, "detail": refusal.detail})


def refused(refusal: service.Refused, router: bootstrap.Router, endpoint: str) -> JSONResponse:
    """A use case's refusal as its HTTP answer (raised, but for those returned: the 503
    and the Idempotency-Key's)."""
    if refusal.refusal is service.Refusal.UNAVAILABLE:
        return unavailable(router.settings, endpoint)
    if refusal is service.KEY_REUSED:
        return key_reused(refusal)
    if refusal is service.KEY_IN_FLIGHT:
        return key_in_flight(refusal, router.settings)
    if refusal.refusal is service.Refusal.FORBIDDEN:
        raise refusals.Refused(403, refusal.error or refusals.FORBIDDEN, refusal.detail)
    if refusal.refusal is service.Refusal.INVALID:
        raise http.InvalidField(refusal.field, refusal.detail)
    status = 404 if refusal.refusal is service.Refusal.NOT_FOUND else 409
    raise HTTPException(status, detail={"error": refusal.error, "detail": refusal.detail})


_KEY = {"alias": "Idempotency-Key", "min_length": 1,
        "max_length": intake_policy.KEY_MAX_LENGTH, "pattern": intake_policy.KEY.pattern}
IdempotencyKey = Annotated[str | None, Header(
    **_KEY, description="Retries with the same key get the same ticket id, and no second"
                        " ticket")]
ReportIdempotencyKey = Annotated[str | None, Header(
    **_KEY, description="Retries with the same key get the first report's answer (its"
                        " event id), and no second event, whatever became of the ticket"
                        " since")]
# A ticket a stage dead-lettered (service.held), as known.routed_ticket tells it: to whom
# held_tickets.may_be_told says.
HELD = ("`held`: a stage dead-lettered the ticket, and no replay routed it since: the detail"
        " says which stage and when (to an admin, also the dead letter's id and the fault's"
        " class); no Retry-After: asking again will not route it, an operator's replay"
        " does. Told to an admin and to the platform that posted the ticket only: a"
        " department (the ticket is in none) and another platform are answered as on an id"
        " of no ticket")
# An id of no ticket the caller may know of, asked by a department or an admin.
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {
    "description": "`not_found`: no routed ticket by this id; to a department, also a"
                   " ticket held as a dead letter (an admin is told it is `held`, 409)"}}
# A report on a ticket whose state does not allow it, or under an Idempotency-Key whose
# first request is still being recorded.
REPORT_IN_FLIGHT: dict[int | str, dict[str, Any]] = {409: {
    "description": "`resolved`: the ticket is closed and takes no more reports;"
                   " `trace_full`: its trace holds the most steps it takes, and it takes"
                   " only what its service level needs; or `in_progress`: a report with"
                   " the same"
                   " Idempotency-Key is being recorded, retry after Retry-After",
    "headers": http.RETRY_AFTER}}
_REPORT_CONFLICTS: dict[int | str, dict[str, Any]] = {409: {
    **REPORT_IN_FLIGHT[409],
    "description": f"{REPORT_IN_FLIGHT[409]['description']}; or {HELD}"}}


def sent_once(request: Request, correlation_id: str | None,
              idempotency_key: str | None) -> None:
    """A 422 for an X-Correlation-ID or an Idempotency-Key sent more than once (looked
    for only when one was sent)."""
    if correlation_id is not None or idempotency_key is not None:
        http.sent_once(request, "Idempotency-Key", "X-Correlation-ID")


def report_key(idempotency_key: str | None, router: bootstrap.Router,
               ) -> service.ReportKey | None:
    return None if idempotency_key is None else service.ReportKey(
        idempotency_key, router.intake_keys, router.claim_hold)


@api.post("/tickets", status_code=202, response_model=TicketAccepted,
          responses={**UNAVAILABLE, 409: {"description": "The same Idempotency-Key is in"
                                                         " flight; retry after Retry-After",
                                          "headers": http.RETRY_AFTER},
                     **RATE_LIMITED})
async def submit_ticket(
    submission: TicketSubmission,
    platform: auth.RateLimitedPlatform,
    request: Request,
    correlation_id: CorrelationId = None,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Accept a ticket: answered 202 only once the Kafka transaction holding it is
    committed; a 503 means it was not committed, and never will be."""
    sent_once(request, correlation_id, idempotency_key)
    router = bootstrap.router_of(request)  # not a dependency: one fewer to solve a request
    accepted = await service.accept_ticket(
        submission, platform=platform.subject, correlation_id=correlation_id,
        idempotency_key=idempotency_key, keys=router.intake_keys, publisher=router.publisher,
        in_flight_for=router.claim_hold, now=datetime.now(UTC))
    verdict = accepted.verdict
    if verdict is service.Verdict.TOO_LARGE:
        raise HTTPException(413, detail={
            "error": "payload_too_large",
            "detail": f"{accepted.problem}: the ticket, written out, must leave room for"
                      " what routing adds; shorten the body or the attributes"})
    if verdict is service.Verdict.KEY_REUSED:
        return key_reused(service.KEY_REUSED)
    if verdict is service.Verdict.IN_FLIGHT:
        return key_in_flight(service.KEY_IN_FLIGHT, router.settings)
    if verdict is service.Verdict.UNAVAILABLE:
        return unavailable(router.settings, "tickets")
    if verdict is service.Verdict.ACCEPTED:
        _ACCEPTED_ON[submission.channel].inc()
    return ticket_accepted(accepted.ticket_id, accepted.correlation_id)


def ticket_accepted(ticket_id: str, correlation_id: str) -> Response:
    """The 202 of `submit_ticket`: its response model `TicketAccepted` (what OpenAPI
    shows) as FastAPI writes a returned one, in the same bytes (pydantic's JSON of it,
    compact; tests/unit/test_intake_answers.py), written here by orjson rather than the
    returned model validated again and then written."""
    return Response(orjson.dumps({"ticket_id": ticket_id, "status": "accepted",
                                  "correlation_id": correlation_id}),
                    status_code=202, media_type="application/json")


@api.post("/tickets/{ticket_id}/events", status_code=202, response_model=ReportAccepted,
          responses={**UNAVAILABLE, **_REPORT_CONFLICTS, **NOT_FOUND, **RATE_LIMITED})
async def report_event(
    ticket_id: TicketId,
    report: DepartmentReport,
    principal: auth.RateLimitedDepartmentOrAdmin,
    request: Request,
    correlation_id: CorrelationId = None,
    idempotency_key: ReportIdempotencyKey = None,
) -> ReportAccepted | JSONResponse:
    """A department reports that it picked up, responded to, waits on the customer of or
    resolved a ticket (a department's credential: only tickets that are with that
    department)."""
    sent_once(request, correlation_id, idempotency_key)
    router = bootstrap.router_of(request)  # not a dependency: one fewer to solve a request
    recorded = await service.record_report(
        ticket_id, events.TicketEventType(f"ticket.{report.type}"),
        department=report.department, occurred_at=report.occurred_at, principal=principal,
        correlation_id=correlation_id, routed=router.routed, publisher=router.publisher,
        table=router.table.current, held=router.held, now=datetime.now(UTC),
        key=report_key(idempotency_key, router))
    if isinstance(recorded, service.Refused):
        return refused(recorded, router, "events")
    return ReportAccepted(ticket_id=ticket_id, event_id=recorded.event_id, type=report.type)
