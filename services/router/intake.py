"""The intake API: support platforms post tickets and departments report on them."""

from __future__ import annotations

import hashlib
import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, HTTPException, Path, Request
from fastapi.responses import JSONResponse
from prometheus_client import Counter
from pydantic import BaseModel, ConfigDict, Field

from services.core import access, auth, db, envelope, events, http, kafka, tickets, topics
from services.router import intake_policy
from services.router.models import IntakeKeyRow, RoutedTicketRow
from services.router.store import IntakeKeys

logger = logging.getLogger(__name__)
SOURCE = events.INTAKE_SOURCE

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


class TicketSubmission(tickets.TicketContent):
    """A ticket as a support platform posts it: the ticket contract every stage reads,
    so that what is accepted here can be carried to a department. Unknown fields are
    rejected by name."""

    model_config = ConfigDict(extra="forbid")


class TicketAccepted(BaseModel):
    ticket_id: str
    status: Literal["accepted"] = "accepted"
    correlation_id: str


class DepartmentReport(BaseModel):
    """What a department reports about a ticket it handles."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["picked_up", "responded", "waiting_on_customer", "resolved"] = Field(
        description="waiting_on_customer pauses the ticket's service-level clocks until"
                    " its platform reports the customer's reply")
    department: str | None = Field(default=None, pattern=topics.DEPARTMENT_NAME.pattern)
    occurred_at: http.Timestamp | None = Field(
        default=None, description="When it happened (RFC 3339 with offset); default: now")


class ReportAccepted(BaseModel):
    ticket_id: str
    event_id: str
    type: str
    status: Literal["accepted"] = "accepted"


async def get_publisher(request: Request) -> kafka.Publisher:
    publisher: kafka.Publisher = request.app.state.publisher
    return publisher


PublisherDep = Annotated[kafka.Publisher, Depends(get_publisher)]
CorrelationId = Annotated[str | None, Header(alias="X-Correlation-ID", max_length=128)]
TicketId = Annotated[str, Path(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$")]

UNAVAILABLE: dict[int | str, dict[str, Any]] = {
    503: {"description": "Kafka did not acknowledge; retry after Retry-After"}}
RATE_LIMITED: dict[int | str, dict[str, Any]] = {429: {
    "description": "Over the credential's intake rate limit; retry after Retry-After",
    "headers": {"Retry-After": {"description": "Seconds until a ticket is taken again",
                                "schema": {"type": "integer", "minimum": 1}}}}}

api = APIRouter(prefix="/v1", tags=["tickets"])


def unavailable(request: Request, endpoint: str) -> JSONResponse:
    INTAKE_UNAVAILABLE.labels(endpoint).inc()
    retry_after = request.app.state.settings.retry_after_seconds
    return JSONResponse(
        status_code=503,
        headers={"Retry-After": str(retry_after)},
        content={"error": "unavailable",
                 "detail": "the ticket store (Kafka) did not acknowledge in time: the ticket"
                           " is not accepted and will not be delivered; retry later with the"
                           " same Idempotency-Key to get the same ticket id"},
    )


async def get_intake_keys(request: Request) -> IntakeKeys:
    keys: IntakeKeys = request.app.state.intake_keys
    return keys


Keys = Annotated[IntakeKeys, Depends(get_intake_keys)]
IdempotencyKey = Annotated[str | None, Header(
    alias="Idempotency-Key", min_length=1, max_length=255, pattern=r"^[\x21-\x7e]+$",
    description="Retries with the same key get the same ticket id, and no second ticket")]


@api.post("/tickets", status_code=202, response_model=TicketAccepted,
          responses={**UNAVAILABLE, 409: {"description": "The same Idempotency-Key is in"
                                                         " flight; retry after Retry-After"},
                     **RATE_LIMITED})
async def submit_ticket(
    submission: TicketSubmission,
    request: Request,
    platform: auth.RateLimitedPlatform,
    publisher: PublisherDep,
    keys: Keys,
    correlation_id: CorrelationId = None,
    idempotency_key: IdempotencyKey = None,
) -> TicketAccepted | JSONResponse:
    """Accept a ticket: answered 202 only once the Kafka transaction holding it is
    committed; a 503 means it was not committed, and never will be."""
    received_at = datetime.now(UTC)
    ticket_id = str(uuid.uuid4())
    # Written out before anything is claimed or shared: a ticket that cannot be carried
    # to its department is this caller's 4xx alone.
    ticket, records = _accepted(submission, ticket_id, received_at, correlation_id,
                                platform.subject)
    if idempotency_key is not None:
        fingerprint = hashlib.sha256(submission.model_dump_json().encode()).hexdigest()
        # Keys are the platform's own: two platforms may well pick the same one.
        idempotency_key = scoped_key(platform, idempotency_key)
        claim = await keys.claim(idempotency_key, fingerprint=fingerprint,
                                 ticket_id=ticket_id, now=received_at)
        earlier = _earlier_request(request, claim, ticket_id, fingerprint, received_at)
        if earlier is not None:
            return earlier
        if claim.ticket_id != ticket_id:  # a crashed request's, which we take over
            ticket, records = _accepted(submission, claim.ticket_id, received_at,
                                        correlation_id, platform.subject)
    correlation = correlation_id or ticket.ticket_id
    try:
        await publisher.publish(records)
    except kafka.PublishFailed as exc:
        logger.warning("ticket not accepted: Kafka unavailable", extra={"error": str(exc)})
        # The key stays pending, so a retry carries the same ticket id: should the broker
        # have committed after all (its answer to the commit lost, see
        # transactional_publisher), the ticket is delivered twice under one id, not
        # under two.
        return unavailable(request, "tickets")
    if idempotency_key is not None:
        try:
            await keys.accepted(idempotency_key)
        except db.STORE_ERRORS as error:
            if not db.is_outage(error):
                raise
            # The ticket is in Kafka: say so. A retry with this key publishes it again
            # (the key stays pending), and the router drops that copy.
            logger.warning("ticket accepted; its Idempotency-Key stays pending (store"
                           " unavailable)", extra={"ticket_id": ticket.ticket_id})
    TICKETS_ACCEPTED.labels(ticket.channel).inc()
    logger.info("ticket accepted", extra={"ticket_id": ticket.ticket_id,
                                          "correlation_id": correlation})
    return TicketAccepted(ticket_id=ticket.ticket_id, correlation_id=correlation)


def _accepted(submission: TicketSubmission, ticket_id: str, received_at: datetime,
              correlation_id: str | None, platform: str | None,
              ) -> tuple[tickets.Ticket, list[envelope.Record]]:
    """The ticket and its records: on `tickets.incoming` and its `received` event."""
    ticket = tickets.Ticket(ticket_id=ticket_id, received_at=received_at, platform=platform,
                            **dict(submission))
    correlation = correlation_id or ticket_id
    lifecycle = events.TicketEvent(ticket_id=ticket_id, type=events.TicketEventType.RECEIVED,
                                   occurred_at=received_at, received_at=received_at,
                                   platform=platform)
    return ticket, [_ticket_record(ticket, correlation),
                    kafka.Output(topics.EVENTS, ticket_id,
                                 events.as_envelope(lifecycle, correlation, SOURCE)).encoded()]


def _ticket_record(ticket: tickets.Ticket, correlation_id: str) -> envelope.Record:
    """The ticket's record on `tickets.incoming`, if it fits the size budget that leaves
    the stages room for what they add; else 413."""
    received = envelope.Event(
        type=events.TicketEventType.RECEIVED, source=SOURCE, ticket_id=ticket.ticket_id,
        correlation_id=correlation_id, data=ticket.model_dump(mode="json"),
        time=ticket.received_at)
    try:
        return envelope.encode(topics.INCOMING, ticket.customer_id, received,
                               max_bytes=tickets.MAX_TICKET_RECORD_BYTES)
    except envelope.Unserialisable as exc:
        raise HTTPException(413, detail={
            "error": "payload_too_large",
            "detail": f"{exc}: the ticket, written out, must leave room for what routing"
                      " adds; shorten the body or the attributes"}) from exc


def scoped_key(platform: access.Principal, idempotency_key: str) -> str:
    return hashlib.sha256(f"{platform.subject}\x00{idempotency_key}".encode()).hexdigest()


async def _ensure_with_department(request: Request, ticket_id: str,
                                  principal: access.Principal, report: DepartmentReport) -> None:
    """A department reports on its own tickets only, and on what happened between the
    ticket's receipt and now (a report dated earlier would dodge its escalation)."""
    if report.department is not None and report.department != principal.subject:
        raise auth.Refused(403, "forbidden", "a department credential reports for its own"
                                             " department only")
    row = await request.app.state.routed.get(ticket_id)
    if row is None:
        raise HTTPException(404, detail={"error": "not_found",
                                         "detail": f"no routed ticket {ticket_id!r}"})
    auth.ensure_may_act_for(principal, row.department)
    ensure_plausible_time(row, report.occurred_at)


def ensure_plausible_time(row: RoutedTicketRow, occurred_at: datetime | None) -> None:
    """A report's time lies between the ticket's receipt and now."""
    received = row.payload.get("received_at")
    received_at = datetime.fromisoformat(received) if isinstance(received, str) else None
    verdict = intake_policy.judge_report_time(occurred_at, received_at=received_at,
                                              now=datetime.now(UTC))
    if verdict is intake_policy.ReportTime.BEFORE_RECEIPT:
        raise http.InvalidField("body.occurred_at", f"before the ticket was received"
                                                    f" ({received}); leave it out for now")
    if verdict is intake_policy.ReportTime.IN_FUTURE:
        raise http.InvalidField("body.occurred_at", "in the future; leave it out for now")


def _earlier_request(request: Request, claim: IntakeKeyRow, ticket_id: str, fingerprint: str,
                     now: datetime) -> TicketAccepted | JSONResponse | None:
    """The answer to a retry, or None when this request is to publish the ticket."""
    settings = request.app.state.settings
    claimed = intake_policy.ClaimedKey(claim.ticket_id, claim.fingerprint, claim.status,
                                       claim.created_at)
    verdict = intake_policy.judge_claim(
        claimed, ticket_id=ticket_id, fingerprint=fingerprint, now=now,
        in_flight_for=timedelta(seconds=2 * settings.produce_timeout_seconds))
    if verdict is intake_policy.Claim.MISMATCH:
        return JSONResponse(status_code=422, content={"error": "invalid_request", "fields": [{
            "field": "header.Idempotency-Key", "type": "idempotency_key_reused",
            "problem": "this key was used for a different ticket; use a new key per ticket"}]})
    if verdict is intake_policy.Claim.REPLAY:
        return TicketAccepted(ticket_id=claim.ticket_id, correlation_id=claim.ticket_id)
    if verdict is intake_policy.Claim.IN_FLIGHT:
        return JSONResponse(
            status_code=409, headers={"Retry-After": str(settings.retry_after_seconds)},
            content={"error": "in_progress",
                     "detail": "a request with this Idempotency-Key is being accepted"})
    return None


@api.post("/tickets/{ticket_id}/events", status_code=202, response_model=ReportAccepted,
          responses=UNAVAILABLE)
async def report_event(
    ticket_id: TicketId,
    report: DepartmentReport,
    request: Request,
    publisher: PublisherDep,
    principal: auth.DepartmentOrAdmin,
    correlation_id: CorrelationId = None,
) -> ReportAccepted | JSONResponse:
    """A department reports that it picked up, responded to, waits on the customer of or
    resolved a ticket (a department's credential: only tickets that are with that
    department)."""
    if principal.role is access.Role.DEPARTMENT:
        await _ensure_with_department(request, ticket_id, principal, report)
        report = report.model_copy(update={"department": principal.subject})
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
        return unavailable(request, "events")
    return ReportAccepted(ticket_id=ticket_id, event_id=event.id, type=report.type)
