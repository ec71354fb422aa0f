"""Reports on a routed ticket: a department picked it up, responded, waits on the
customer or resolved it; the platform that posted it says the customer replied. Each is
published on `tickets.events`, where the router's event follower moves the ticket's
clocks (services/router/event_follower.py) and the metrics service its timeline.

A report may come with an `Idempotency-Key`, as a ticket does: a retry under the same
key gets the first report's answer (its event id), whatever has become of the ticket
since (a retried `resolved` finds it resolved, a retried `picked_up` may find it
transferred). A report is judged (whose ticket, its time, open) before its key is
claimed, so a refusal leaves the key free; a claim is a report judged and being
published. A retry after a request that died, or met an outage, before its answer
(after a 503, at once; after one that died, once its claim has run out) publishes that
report again under the same event id, without judging it again: it
stood when it was judged, and its readers may have it already, and take it once (the
router's follower knows its id from the ticket's trace, a webhook callback's id is its
event's).
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from services.core import access, db, events, kafka, topics
from services.router import intake_policy, ports, routing
from services.router.models import RoutedTicketRow
from services.router.service import acting_for, known, verdicts
from services.router.service.accepting import scoped_key, unpublished
from services.router.service.verdicts import KEY_IN_FLIGHT, KEY_REUSED, Refusal, Refused

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Recorded:
    ticket_id: str
    event_id: str


@dataclass(frozen=True)
class Judged:
    """A report that stands: the date it stands at, and the correlation id the router
    keeps with its ticket (None: routed before migration 0011)."""

    date: datetime
    correlation_id: str | None


@dataclass(frozen=True)
class ReportKey:
    """A report's `Idempotency-Key` and where keys are kept. A key is its reporter's own:
    the department's (any of its credentials), the platform's, or the admins'."""

    key: str
    keys: ports.Keys
    in_flight_for: timedelta  # a claim older than this was left by a request that died

    def scoped(self, reporter: access.Principal) -> str:
        # Apart from the tickets' keys: a platform may use one key for a ticket and for
        # a reply on it.
        return scoped_key(f"report/{reporter.role.value}/{reporter.subject or ''}", self.key)


async def record_report(ticket_id: str, report: events.TicketEventType, *,
                        department: str | None, occurred_at: datetime | None,
                        principal: access.Principal, correlation_id: str | None,
                        routed: ports.Routed, publisher: ports.Publisher,
                        table: routing.RoutingTable, held: ports.Held, now: datetime,
                        key: ReportKey | None = None) -> Recorded | Refused:
    """A department's report on a routed ticket not resolved yet. A department
    credential reports on tickets that are with its department only, dated between the
    ticket's arrival there and now (a report dated earlier would dodge its escalation,
    or credit the department that held it then); an admin's, between the ticket's
    receipt and now, as a platform's reply (a date beyond would have the event follower
    count business time up to it, and set the ticket's first response there). A
    `department` named that is no department of `table` is refused first (acting_for);
    a ticket not routed, as known.routed_ticket says (held, to an admin); an admin's
    naming a department other than the one holding the ticket at the report's date
    (acting_for.not_holding)."""
    asked_for = department
    if principal.role is access.Role.DEPARTMENT:
        department = principal.subject

    async def judged() -> Refused | Judged:
        unknown = await acting_for.refused(asked_for, "body.department", principal=principal,
                                           table=table, routed=routed, ticket_id=ticket_id)
        if unknown is not None:
            return unknown
        if principal.role is access.Role.DEPARTMENT and asked_for is not None \
                and asked_for != principal.subject:
            return Refused(Refusal.FORBIDDEN, "a department credential reports for its own"
                                              " department only")
        row = await known.routed_ticket(ticket_id, principal=principal, routed=routed,
                                        held=held, now=now)
        if isinstance(row, Refused):
            return row
        if principal.role is access.Role.DEPARTMENT and not principal.may_act_for(
                row.department):  # told where it went if escalated out of its department
            return verdicts.acts_for_own(row, principal)
        # An admin may date a report while another department held the ticket.
        reporting = row.department if principal.role is access.Role.DEPARTMENT else None
        dated = plausible_date(row, occurred_at, now=now, department=reporting)
        if isinstance(dated, Refused):
            return dated
        if principal.role is access.Role.ADMIN and asked_for is not None:
            other = acting_for.not_holding(row, asked_for, dated, "body.department")
            if other is not None:
                return other
        return verdicts.closed_to_report(row, report) or Judged(dated, row.correlation_id)

    report_event = events.TicketEvent(ticket_id=ticket_id, type=report,
                                      occurred_at=occurred_at or now, department=department)
    return await _published_once(report_event, given_at=occurred_at, judged=judged,
                                 key=key, reporter=principal, correlation_id=correlation_id,
                                 publisher=publisher, now=now)


async def customer_replied(ticket_id: str, *, occurred_at: datetime | None,
                           platform: access.Principal,
                           correlation_id: str | None, routed: ports.Routed,
                           held: ports.Held, publisher: ports.Publisher, now: datetime,
                           key: ReportKey | None = None) -> Recorded | Refused:
    """The customer replied on a ticket this platform posted: its clocks resume, and a
    next-response clock starts once it has had its first response. A ticket of this
    platform's that a stage dead-lettered is answered as held; one not routed yet, or
    another platform's, as an id the router does not know, so that no platform learns
    which ids are tickets (known.routed_ticket)."""

    async def judged() -> Refused | Judged:
        row = await known.routed_ticket(ticket_id, principal=platform, routed=routed,
                                        held=held, now=now)
        if isinstance(row, Refused):
            return row
        dated = plausible_date(row, occurred_at, now=now)
        if isinstance(dated, Refused):
            return dated
        return verdicts.closed_to_report(row, events.TicketEventType.CUSTOMER_REPLIED) \
            or Judged(dated, row.correlation_id)

    reply = events.TicketEvent(ticket_id=ticket_id,
                               type=events.TicketEventType.CUSTOMER_REPLIED,
                               occurred_at=occurred_at or now, platform=platform.subject)
    return await _published_once(reply, given_at=occurred_at, judged=judged, key=key,
                                 reporter=platform, correlation_id=correlation_id,
                                 publisher=publisher, now=now)


def plausible_date(row: RoutedTicketRow, occurred_at: datetime | None, *,
                   now: datetime, department: str | None = None) -> Refused | datetime:
    """The date a report stands at (intake_policy.report_date), if its time lies between
    the ticket's receipt (for a `department`'s report: its arrival there) and now, give
    or take the reporter's clock skew; else why not."""
    received = row.payload.get("received_at")
    received_at = datetime.fromisoformat(received) if isinstance(received, str) else None
    arrived = None if department is None else intake_policy.arrived_at(row.trace, department)
    verdict = intake_policy.judge_report_time(occurred_at, received_at=received_at, now=now,
                                              arrived=arrived)
    if verdict is intake_policy.ReportTime.BEFORE_RECEIPT:
        return Refused(Refusal.INVALID, f"before the ticket was received ({received});"
                                        f" leave it out for now", field="body.occurred_at")
    if verdict is intake_policy.ReportTime.BEFORE_ARRIVAL and arrived is not None:
        return Refused(Refusal.INVALID, f"before the ticket came to {department}"
                                        f" ({arrived.isoformat()}); leave it out for now",
                       field="body.occurred_at")
    if verdict is intake_policy.ReportTime.IN_FUTURE:
        return Refused(Refusal.INVALID, "in the future; leave it out for now",
                       field="body.occurred_at")
    return intake_policy.report_date(occurred_at, received_at=received_at, now=now,
                                     arrived=arrived)


async def _published_once(report: events.TicketEvent, *, given_at: datetime | None,
                          judged: Callable[[], Awaitable[Refused | Judged]],
                          key: ReportKey | None, reporter: access.Principal,
                          correlation_id: str | None, publisher: ports.Publisher,
                          now: datetime) -> Recorded | Refused:
    """The report published at the date `judged` gives it, unless it refuses it, under
    the correlation id of an event about its ticket (events.correlation_of: the one the
    request gave, else its ticket's); under a key, once (see the module's docstring)."""
    event_id = str(uuid.uuid4())
    if key is None:
        judgement = await judged()
        if isinstance(judgement, Refused):
            return judgement
        return await _published(
            report.model_copy(update={"occurred_at": judgement.date}),
            events.correlation_of(report.ticket_id, stored=judgement.correlation_id,
                                  given=correlation_id), publisher, event_id)
    scoped, fingerprint = key.scoped(reporter), fingerprint_of(report, given_at)
    claim = await key.keys.find(scoped)
    if claim is None:
        judgement = await judged()
        if isinstance(judgement, Refused):
            return judgement
        report = report.model_copy(update={"occurred_at": judgement.date})
        claim = await key.keys.claim(
            scoped, fingerprint=fingerprint, ticket_id=report.ticket_id, now=now,
            event_id=event_id, occurred_at=judgement.date,
            correlation_id=events.correlation_of(report.ticket_id,
                                                 stored=judgement.correlation_id,
                                                 given=correlation_id))
    claimed = intake_policy.ClaimedKey(claim.event_id or "", claim.fingerprint, claim.status,
                                       claim.created_at)
    verdict = intake_policy.judge_claim(claimed, holder=event_id, fingerprint=fingerprint,
                                        now=now, in_flight_for=key.in_flight_for)
    if verdict is intake_policy.Claim.MISMATCH:
        return KEY_REUSED
    if verdict is intake_policy.Claim.IN_FLIGHT:
        return KEY_IN_FLIGHT
    if verdict is intake_policy.Claim.REPLAY:
        return Recorded(report.ticket_id, claimed.holder)
    if claimed.holder != event_id:
        # Judged by a request that died, or met an outage, before its answer: published
        # again under its id, at the date it was judged to stand at (claimed before that
        # was kept: as given, or undated at that request's claim), and its readers take
        # that event once (the router's follower by its id).
        report = report.model_copy(
            update={"occurred_at": claim.occurred_at or given_at or claim.created_at})
    # As it was judged to go out (claimed before that was kept: as this request gives it).
    correlation = claim.correlation_id or events.correlation_of(
        report.ticket_id, stored=None, given=correlation_id)
    recorded = await _published(report, correlation, publisher, claimed.holder)
    if recorded is verdicts.UNAVAILABLE:
        await unpublished(key.keys, scoped, ticket_id=report.ticket_id)
    elif isinstance(recorded, Recorded):
        try:
            await key.keys.accepted(scoped, correlation_id=correlation)
        except db.STORE_ERRORS as error:
            if not db.is_temporary(error):
                raise
            # Published: say so. A retry with this key publishes it again under the same
            # event id (the key stays pending), which its webhook callback takes once.
            logger.warning("report recorded; its Idempotency-Key stays pending (store"
                           " unavailable or in conflict)", extra={"ticket_id": report.ticket_id})
    return recorded


def fingerprint_of(report: events.TicketEvent, given_at: datetime | None) -> str:
    """What the caller said, not what was filled in: a retry leaving out occurred_at is
    the same report, and one moment written with another offset is the same moment."""
    return hashlib.sha256(json.dumps(
        [report.ticket_id, report.type, report.department, report.platform,
         None if given_at is None else given_at.astimezone(UTC).isoformat()]
    ).encode()).hexdigest()


async def _published(lifecycle: events.TicketEvent, correlation_id: str,
                     publisher: ports.Publisher, event_id: str) -> Recorded | Refused:
    event = events.as_envelope(lifecycle, correlation_id, events.INTAKE_SOURCE,
                               event_id=event_id)
    try:
        await publisher.publish([kafka.Output(topics.EVENTS, lifecycle.ticket_id, event)])
    except kafka.PublishFailed:
        return verdicts.UNAVAILABLE
    return Recorded(lifecycle.ticket_id, event.id)
