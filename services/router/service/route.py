"""Routing a segmented ticket: the routing table's decision (with the departments'
load), the routed ticket for its department's queue, its lifecycle event, its clocks
and the first steps of its trace. The router stage (services/router/worker.py) calls
this for each ticket, and keeps the batch's states, copies and store outages."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.core import envelope, events, kafka, tickets, topics
from services.router import ports, priority, routing, service_clocks
from services.router.dispatch import SOURCE
from services.router.store import Dispatch, Stored


@dataclass(frozen=True)
class FirstRouting:
    dispatch: Dispatch  # what the router's store records of it
    outputs: list[kafka.Output]  # the ticket on its queue, and `ticket.routed`


def route(ticket: tickets.SegmentedTicket, *, table: routing.RoutingTable,
          load: ports.LoadView, now: datetime, event_id: str,
          correlation_id: str) -> FirstRouting:
    """Where `table` sends the ticket now, given the departments' `load`."""
    loads, states = load()
    decision = routing.decide(ticket.segmentation.segment, ticket.segmentation.tier,
                              routing.view_of(ticket), table, now=now, load=loads,
                              overflow_state=states)
    record = tickets.Routing(
        department=decision.department, reason=decision.reason, entry=decision.entry,
        table_version=table.version, routed_at=now, queue=decision.queue_topic,
        priority=decision.priority, priority_aging_seconds=table.aging.step_seconds,
        first_response_target_seconds=decision.first_response_target.total_seconds(),
        first_response_deadline=decision.first_response_deadline,
        overflowed_from=decision.overflowed_from, explanation=list(decision.explanation))
    # The segmented ticket as validated (nothing else travels on), routed.
    data = ticket.routed_data(record)
    clocks = service_clocks.routed(targets_of(decision, table), now,
                                   table.policy(decision.department).calendar)
    lifecycle = events.TicketEvent(
        ticket_id=ticket.ticket_id, type=events.TicketEventType.ROUTED, occurred_at=now,
        received_at=ticket.received_at, department=decision.department,
        segment=ticket.segmentation.segment, reason=decision.reason,
        from_department=decision.overflowed_from, priority=decision.priority,
        first_response_deadline=decision.first_response_deadline, platform=ticket.platform,
        deadlines=clocks.deadlines())
    dispatch = Dispatch(
        ticket_id=ticket.ticket_id, department=decision.department,
        segment=ticket.segmentation.segment, priority=decision.priority,
        deadline=decision.first_response_deadline, steps=trace_steps(ticket, record),
        payload=data, at=now, event_id=event_id, customer_id=ticket.customer_id,
        platform=ticket.platform, clocks=clocks, correlation_id=correlation_id)
    return FirstRouting(dispatch, [
        _in_lane(decision.queue_topic, ticket, data, correlation_id, now),
        kafka.Output(topics.EVENTS, ticket.ticket_id,
                     events.as_envelope(lifecycle, correlation_id, SOURCE)),
    ])


def replayed(stored: Stored, *, correlation_id: str) -> list[kafka.Output]:
    """A routing replayed once its ticket was stored (the records of its first attempt
    were not committed): the ticket as stored, in the lane of its department and
    priority, and its `ticket.routed` as first decided. Once a transfer or escalation put
    it in another queue, that queue has it: only the lifecycle event goes."""
    ticket = tickets.RoutedTicket.model_validate(stored.payload)
    record = ticket.routing
    lifecycle = events.TicketEvent(
        ticket_id=ticket.ticket_id, type=events.TicketEventType.ROUTED,
        occurred_at=record.routed_at, received_at=ticket.received_at,
        department=record.department, segment=ticket.segmentation.segment,
        reason=record.reason, from_department=record.overflowed_from,
        priority=record.priority, first_response_deadline=record.first_response_deadline,
        platform=ticket.platform, deadlines=stored.deadlines)
    routed = kafka.Output(topics.EVENTS, ticket.ticket_id,
                          events.as_envelope(lifecycle, correlation_id, SOURCE))
    if stored.handed_on:
        return [routed]
    lane = priority.queue_for(stored.department, stored.priority)
    return [_in_lane(lane, ticket, stored.payload, correlation_id, record.routed_at), routed]


def _in_lane(lane: str, ticket: tickets.SegmentedTicket, data: dict[str, Any],
             correlation_id: str, at: datetime) -> kafka.Output:
    return kafka.Output(lane, ticket.customer_id, envelope.Event(
        type=events.TicketEventType.ROUTED, source=SOURCE, ticket_id=ticket.ticket_id,
        correlation_id=correlation_id, data=data, time=at))


def targets_of(decision: routing.RoutingDecision,
               table: routing.RoutingTable) -> service_clocks.Targets:
    level = decision.level
    return service_clocks.Targets(
        decision.first_response_target,
        level.next_response_target if level else None,
        level.resolution_target if level else None, table.warning_share)


def trace_steps(ticket: tickets.SegmentedTicket,
                record: tickets.Routing) -> list[dict[str, Any]]:
    """The first steps of a ticket's trace: how it was segmented, then routed (their
    kinds: intake_policy.ROUTING_STEPS)."""
    segmentation = ticket.segmentation
    return [
        {"at": ticket.received_at.isoformat(), "step": "received"},
        {"step": "segmented", "segment": segmentation.segment, "rule": segmentation.rule,
         "rules_version": segmentation.rules_version, "tier": segmentation.tier,
         "customer_known": segmentation.customer_known,
         "decided_by": sorted(segmentation.decided_by)},
        {"at": record.routed_at.isoformat(), "step": "routed",
         "department": record.department, "reason": record.reason, "entry": record.entry,
         "table_version": record.table_version, "queue": record.queue,
         "priority": record.priority,
         "first_response_deadline": record.first_response_deadline.isoformat()
         if record.first_response_deadline else None,
         "overflowed_from": record.overflowed_from, "why": record.explanation},
    ]
