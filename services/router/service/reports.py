"""Reports on a routed ticket: a department picked it up, responded, waits on the
customer or resolved it; the platform that posted it says the customer replied. Each is
published on `tickets.events`, where the router's event follower moves the ticket's
clocks (services/router/event_follower.py) and the metrics service its timeline."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from services.core import access, events, kafka, lifecycle, topics
from services.router import intake_policy, ports
from services.router.models import RoutedTicketRow
from services.router.service import verdicts
from services.router.service.verdicts import Refusal, Refused


@dataclass(frozen=True)
class Recorded:
    ticket_id: str
    event_id: str


async def record_report(ticket_id: str, report: events.TicketEventType, *,
                        department: str | None, occurred_at: datetime | None,
                        principal: access.Principal, correlation_id: str | None,
                        routed: ports.Routed, publisher: ports.Publisher,
                        now: datetime) -> Recorded | Refused:
    """A department's report on a routed ticket not resolved yet. A department
    credential reports on tickets that are with its department only, dated between the
    ticket's receipt and now (a report dated earlier would dodge its escalation); an
    admin's is taken as it is."""
    if principal.role is access.Role.DEPARTMENT and department is not None \
            and department != principal.subject:
        return Refused(Refusal.FORBIDDEN, "a department credential reports for its own"
                                          " department only")
    row = await routed.get(ticket_id)
    if row is None:
        return verdicts.not_found(ticket_id)
    if principal.role is access.Role.DEPARTMENT:
        if not principal.may_act_for(row.department):
            return verdicts.ACTS_FOR_OWN
        implausible = plausible_time(row, occurred_at, now=now, department=row.department)
        if implausible is not None:
            return implausible
        department = principal.subject
    if not lifecycle.is_open(row.status):
        return verdicts.RESOLVED
    report_event = events.TicketEvent(ticket_id=ticket_id, type=report,
                                   occurred_at=occurred_at or now, department=department)
    return await _published(report_event, correlation_id, publisher)


async def customer_replied(ticket_id: str, *, occurred_at: datetime | None,
                           platform: str | None,
                           correlation_id: str | None, routed: ports.Routed,
                           publisher: ports.Publisher, now: datetime) -> Recorded | Refused:
    """The customer replied on a ticket this platform posted: its clocks resume, and a
    next-response clock starts once it has had its first response."""
    row = await routed.get(ticket_id)
    if row is None:
        return verdicts.not_found(ticket_id)
    if row.platform != platform:
        return Refused(Refusal.FORBIDDEN,
                       "a platform reports on the tickets it posted only")
    implausible = plausible_time(row, occurred_at, now=now)
    if implausible is not None:
        return implausible
    if not lifecycle.is_open(row.status):
        return verdicts.RESOLVED
    reply = events.TicketEvent(ticket_id=ticket_id,
                               type=events.TicketEventType.CUSTOMER_REPLIED,
                               occurred_at=occurred_at or now, platform=platform)
    return await _published(reply, correlation_id, publisher)


def plausible_time(row: RoutedTicketRow, occurred_at: datetime | None, *,
                   now: datetime, department: str | None = None) -> Refused | None:
    """None when a report's time lies between the ticket's receipt (for a `department`'s
    report: its arrival there) and now."""
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
    return None


async def _published(lifecycle: events.TicketEvent, correlation_id: str | None,
                     publisher: ports.Publisher) -> Recorded | Refused:
    event = events.as_envelope(lifecycle, correlation_id or lifecycle.ticket_id,
                               events.INTAKE_SOURCE)
    try:
        await publisher.publish([kafka.Output(topics.EVENTS, lifecycle.ticket_id, event)])
    except kafka.PublishFailed:
        return verdicts.UNAVAILABLE
    return Recorded(lifecycle.ticket_id, event.id)
