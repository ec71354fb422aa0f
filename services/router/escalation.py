"""Escalation: a ticket with no first response by its deadline raises an escalation
event and is redispatched, once, to its department's escalation target (the fallback
for a department the table in force lacks: escalation_targets). Tickets routed before
migration 0010 have no service-level clocks (it gave none, and none can be given without
the routing table in force then): this is their escalation; the clock watch has the
others."""

from __future__ import annotations

import functools
import logging
from datetime import datetime, timedelta

import pydantic
from prometheus_client import Counter

from services.core import events, kafka, targets, tickets, topics
from services.router import clock_notices, dispatch, escalation_targets, ports, routing
from services.router.models import RoutedTicketRow

logger = logging.getLogger(__name__)

# The lease under which one router of the fleet escalates (services.core.leases).
LEASE = "escalation"

ESCALATIONS = Counter("routing_router_escalations_total",
                      "Tickets this router escalated for a missed first-response deadline"
                      " on a ticket without service-level clocks, handed over or flagged"
                      " where it is (escalated_to its own department), at least once: the"
                      " metrics service counts each hand-over once in"
                      " routing_tickets_escalated_total",
                      ["department", "escalated_to"])


def owes_escalation(row: RoutedTicketRow, now: datetime) -> bool:
    """Whether a ticket without clocks is past its first-response deadline by `now`,
    unanswered and not escalated yet, nor to be checked again later only (its
    escalation failed: clock_watch.checked_again_later). What Routed.due_for_escalation
    selects (tests/integration/test_escalation_due_agreement.py holds the two together)."""
    return row.service_clocks is None and row.first_response_deadline is not None \
        and targets.past_due(row.first_response_deadline, now) \
        and row.first_response_at is None and not row.escalated \
        and (row.next_clock_check is None or row.next_clock_check <= now)


async def escalate(routed: ports.Routed, publisher: ports.Publisher, row: RoutedTicketRow,
                   *, table: routing.RoutingTable, queue_for: dispatch.QueueFor,
                   now: datetime, claim_for: timedelta = ports.HANDOVER_CLAIM,
                   ) -> tuple[clock_notices.Escalated, ...] | None:
    """Escalate a ticket without clocks past its deadline (`owes_escalation`), whether the
    check or a hand-over asked at `now` (clock_watch.send_owed) finds it: claimed as `row`
    read it, as a ticket with clocks is, so that the two at once escalate it once, and a
    hand-over asked after its deadline comes after its escalation. What was escalated
    (empty: its stored copy is not a ticket, marked escalated; None: another hand-over
    holds it, or it was handed over or answered since it was read).

    Published before it is marked: a crash in between escalates the ticket again at
    the next check (at least once), rather than never."""
    held_by, deadline = row.department, row.first_response_deadline  # as read
    escalation = escalation_targets.on_breach(table, held_by)
    target = escalation.to
    step = {"at": now.isoformat(), "step": "escalated", "from": row.department,
            "to": target or row.department,
            "due": None if deadline is None else deadline.isoformat(),  # escalated_from
            "reason": f"no first response by {row.first_response_deadline}"
                      + (f"; {escalation.why}" if escalation.why else "")}
    try:
        ticket = tickets.RoutedTicket.model_validate(row.payload)
    except pydantic.ValidationError as exc:
        # Not a ticket any more (a stored copy edited by hand?): never retried.
        logger.error("ticket not escalated: its stored copy is not a routed ticket",
                     extra={"ticket_id": row.ticket_id, "errors": exc.error_count()})
        await routed.mark_escalated(row.ticket_id)
        return ()
    correlation_id = events.correlation_of(row.ticket_id, stored=row.correlation_id)
    if target is None:
        # Nowhere to escalate to: the event still tells ops, the ticket stays.
        outputs = [kafka.Output(topics.EVENTS, row.ticket_id, events.as_envelope(
            events.TicketEvent(ticket_id=row.ticket_id,
                               type=events.TicketEventType.ESCALATED, occurred_at=now,
                               department=row.department, from_department=row.department,
                               segment=row.segment, reason="escalation"),
            correlation_id, dispatch.SOURCE))]
        target = row.department
    else:
        ticket, outputs = dispatch.redispatch(
            ticket, department=target, reason="escalation",
            from_department=row.department,
            event_type=events.TicketEventType.ESCALATED, now=now,
            correlation_id=correlation_id, queue_for=queue_for)
    claim = await ports.publish_claimed(routed, publisher, row, outputs, hold=claim_for)
    if claim is None:  # handed over or answered since it was read
        return None
    await ports.record_published(functools.partial(
        routed.record_handover, row.ticket_id, department=target, steps=[step],
        ticket=ticket, now=now, claim=claim, escalated=True),
        claim=claim, ticket_id=row.ticket_id,
        end=functools.partial(routed.mark_escalated, row.ticket_id, claim=claim))
    ESCALATIONS.labels(held_by, target).inc()
    logger.info("ticket escalated", extra={"ticket_id": row.ticket_id,
                                           "department": held_by, "escalated_to": target})
    return (clock_notices.Escalated("first_response", 1, deadline, held_by, target),)
