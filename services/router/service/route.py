"""Routing a segmented ticket: the routing table's decision (with the departments'
load), the routed ticket for its department's queue, its lifecycle event, its clocks
and the first steps of its trace. The router stage (services/router/worker.py) calls
this for each ticket, and keeps the batch's states, copies and store outages."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.core import envelope, events, kafka, lifecycle, tickets, topics
from services.router import ports, priority, routing, service_clocks
from services.router.dispatch import SOURCE, queued
from services.router.store import Dispatch, Stored


@dataclass(frozen=True)
class FirstRouting:
    dispatch: Dispatch  # what the router's store records of it
    outputs: list[kafka.Output]  # the ticket on its queue, and `ticket.routed`


def route(ticket: tickets.SegmentedTicket, *, table: routing.RoutingTable,
          load: ports.LoadView, now: datetime, event_id: str,
          correlation_id: str, lanes_missing: Collection[str] = ()) -> FirstRouting:
    """Where `table` sends the ticket now, given the departments' `load` (and, overflow
    not handing it to them, the departments whose lanes the router could not make)."""
    loads, states = load()
    decision = routing.decide(ticket.segmentation.segment, ticket.segmentation.tier,
                              routing.view_of(ticket), table, now=now, load=loads,
                              overflow_state=states, lanes_missing=lanes_missing)
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
                                   table.policy(decision.department).calendar,
                                   first_response_deadline=decision.first_response_deadline)
    routed_event = events.TicketEvent(
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
        platform=ticket.platform, clocks=clocks, correlation_id=correlation_id,
        received_at=ticket.received_at)
    ids = _ids(event_id, decision.department)
    return FirstRouting(dispatch, [
        queued(decision.queue_topic, ticket, data, correlation_id, now, ids.queued),
        _routed_event(routed_event, correlation_id, ids),
    ])


def replayed(stored: Stored, *, routed_by: str, correlation_id: str) -> list[kafka.Output]:
    """A routing replayed once its ticket was stored (the records of its first attempt,
    from the event `routed_by`, were not committed): the ticket as stored, in the lane of
    its department and priority as they stand, and its `ticket.routed` as first decided
    (from its trace), with the clocks' deadlines as they stand; both under the ids the
    first attempt gave them. Only that event once the ticket is closed, or a transfer or
    escalation put it in another queue (that queue has it)."""
    ticket = tickets.RoutedTicket.model_validate(stored.payload)
    first = _first_routed(stored, ticket)
    ids = _ids(routed_by, first.department or stored.department)
    routed = _routed_event(first, correlation_id, ids)
    if stored.handed_on or not lifecycle.is_open(stored.status):
        return [routed]
    lane = priority.queue_for(stored.department, stored.priority)
    return [queued(lane, ticket, stored.payload, correlation_id, first.occurred_at, ids.queued),
            routed]


def _first_routed(stored: Stored, ticket: tickets.RoutedTicket) -> events.TicketEvent:
    """`ticket.routed` as route() published it, from the routing step of the ticket's
    trace (its payload's routing, for a ticket stored without one)."""
    step = stored.first_routing or {}
    first = tickets.Routing.model_validate({
        **ticket.routing.model_dump(mode="json"),
        **{name: step[name] for name in _ROUTING_STEP_FIELDS if name in step},
        **({"routed_at": step["at"]} if "at" in step else {})})
    deadline = stored.deadlines.get("first_response", first.first_response_deadline)
    return events.TicketEvent(
        ticket_id=ticket.ticket_id, type=events.TicketEventType.ROUTED,
        occurred_at=first.routed_at, received_at=ticket.received_at,
        department=first.department, segment=ticket.segmentation.segment,
        reason=first.reason, from_department=first.overflowed_from,
        priority=first.priority, first_response_deadline=deadline,
        platform=ticket.platform, deadlines=stored.deadlines)


# The routing's fields trace_steps writes in its routing step, under the same names.
_ROUTING_STEP_FIELDS = ("department", "reason", "priority", "overflowed_from",
                        "first_response_deadline")


@dataclass(frozen=True)
class _Ids:
    """The ids of a routing's two records: the same each time that routing is published
    (its event, its decision's department), so that a reader keeping ids (a webhook
    callback's) takes it once; another decision for the same event (made while the
    store could not say it had one) gets others."""

    queued: str
    routed: str


def _ids(routed_by: str, department: str) -> _Ids:
    return _Ids(envelope.derived_id(routed_by, f"queued/{department}"),
                envelope.derived_id(routed_by, f"routed/{department}"))


def _routed_event(routed: events.TicketEvent, correlation_id: str, ids: _Ids) -> kafka.Output:
    return kafka.Output(topics.EVENTS, routed.ticket_id, events.as_envelope(
        routed, correlation_id, SOURCE, event_id=ids.routed))


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
