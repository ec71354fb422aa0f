"""Escalation: a ticket with no first response by its deadline raises an escalation
event and is redispatched, once, to its department's escalation target (the fallback
for a department the table in force lacks: escalation_targets)."""

from __future__ import annotations

import functools
import logging
from datetime import datetime, timedelta

import pydantic
from prometheus_client import Counter

from services.core import events, kafka, tickets, topics
from services.router import dispatch, escalation_targets, ports, routing

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


async def escalate_due(routed: ports.Routed, publisher: ports.Publisher, *,
                       table: routing.RoutingTable, queue_for: dispatch.QueueFor,
                       now: datetime,
                       claim_for: timedelta = ports.HANDOVER_CLAIM) -> int:
    """Escalate every ticket past its deadline without a first response; returns how many.

    Published before it is marked: a crash in between escalates the ticket again at
    the next check (at least once), rather than never. A ticket another hand-over holds
    (a transfer being published) waits for the next check."""
    escalated = 0
    for row in await routed.due_for_escalation(now):
        escalation = escalation_targets.on_breach(table, row.department)
        target = escalation.to
        step = {"at": now.isoformat(), "step": "escalated", "from": row.department,
                "to": target or row.department,
                "reason": f"no first response by {row.first_response_deadline}"
                          + (f"; {escalation.why}" if escalation.why else "")}
        try:
            ticket = tickets.RoutedTicket.model_validate(row.payload)
        except pydantic.ValidationError as exc:
            # Not a ticket any more (a stored copy edited by hand?): never retried.
            logger.error("ticket not escalated: its stored copy is not a routed ticket",
                         extra={"ticket_id": row.ticket_id, "errors": exc.error_count()})
            await routed.mark_escalated(row.ticket_id)
            continue
        correlation_id = row.correlation_id or row.ticket_id  # None: routed before 0011
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
            continue
        await ports.record_published(functools.partial(
            routed.record_handover, row.ticket_id, department=target, steps=[step],
            ticket=ticket, now=now, claim=claim, escalated=True),
            claim=claim, ticket_id=row.ticket_id)
        ESCALATIONS.labels(row.department, target).inc()
        logger.info("ticket escalated", extra={"ticket_id": row.ticket_id,
                                               "department": row.department,
                                               "escalated_to": target})
        escalated += 1
    return escalated
