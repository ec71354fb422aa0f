"""The router stage: a segmented ticket in, the ticket in its department's queue out."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from prometheus_client import Counter, Gauge

from services.core import db, envelope, events, kafka, tickets, topics
from services.core.outage import StoreOutage
from services.router import overflow, routing, service_clocks
from services.router.dispatch import SOURCE
from services.router.store import Dispatch, RoutedTickets

logger = logging.getLogger(__name__)

DEFERRED = Gauge("routing_router_deferred_ticket_states",
                 "Routed tickets whose state and trace wait for the SQL store to come back")
COPIES = Counter("routing_router_ticket_copies_dropped",
                 "Second copies of an already routed ticket, not routed again (a platform's"
                 " retry of a ticket whose first answer was lost)")

LoadView = Callable[[], tuple[Mapping[str, overflow.DepartmentLoad],
                              Mapping[str, overflow.OverflowState]]]


def no_load() -> tuple[Mapping[str, overflow.DepartmentLoad],
                       Mapping[str, overflow.OverflowState]]:
    return {}, {}


class RouteTicket:
    """Turns `ticket.segmented` events into `ticket.routed` ones (a pipeline Transform).

    The ticket's state and trace are written to the router's store before its records
    are produced; a replay writes the same again. A ticket goes to one department queue
    once: another copy of an already routed ticket (the intake published it twice when a
    platform retried after losing the first answer) is recognised by the id of the event
    that routed the first, and dropped. When the store is down, the batch is retried for
    the outage's grace period; past it, tickets are routed all the same and their states
    kept in memory until the store is back (`flush_deferred`)."""

    def __init__(self, current_table: Callable[[], routing.RoutingTable], *,
                 routed: RoutedTickets | None = None, load: LoadView = no_load,
                 outage: StoreOutage | None = None) -> None:
        self._current_table = current_table
        self._routed = routed
        self._load = load
        self._outage = outage or StoreOutage(float("inf"))  # default: wait for the store
        self._dispatches: list[Dispatch] = []
        self._deferred: dict[str, Dispatch] = {}
        self._routed_by: dict[str, str | None] = {}  # this batch's tickets routed before

    async def prefetch(self, events: Sequence[envelope.Event]) -> None:
        """Which of the batch's tickets were routed before, and by which event (one query
        a batch)."""
        self._dispatches = []  # what a failed attempt at a batch left
        self._routed_by = {d.ticket_id: d.event_id for d in self._deferred.values()}
        if self._routed is None:
            return
        try:
            self._routed_by |= await self._routed.routing_events(
                {event.ticket_id for event in events if event.ticket_id})
        except db.STORE_ERRORS as error:
            if not db.is_outage(error) or not self._outage.failed():
                raise  # a bug, or within the grace period: the batch is retried

    async def finish_batch(self) -> None:
        """Write the batch's states and traces in one transaction, before its records are
        committed (a crash in between replays the batch, which writes the same again)."""
        dispatches, self._dispatches = self._dispatches, []
        if self._routed is None or not (dispatches or self._deferred):
            return
        try:
            await self._write([*self._deferred.values(), *dispatches])
        except db.STORE_ERRORS as error:
            if not db.is_outage(error) or not self._outage.failed():
                raise  # a bug, or within the grace period: the batch is retried
            if not self._deferred:
                logger.warning("router store down past its grace period: routing on, ticket"
                               " states kept until it is back")
            self._deferred.update((d.ticket_id, d) for d in dispatches)
            DEFERRED.set(len(self._deferred))

    def _is_copy(self, ticket_id: str, event_id: str) -> bool:
        # A replay of the routing event itself (its batch was aborted) routes again.
        routed_by = self._routed_by.get(ticket_id)
        return routed_by is not None and routed_by != event_id

    async def flush_deferred(self) -> None:
        """Write the states kept during an outage (called periodically); quiet while the
        store is still down."""
        if self._routed is not None and self._deferred:
            try:
                await self._write(list(self._deferred.values()))
            except db.STORE_ERRORS as error:
                if not db.is_outage(error):
                    raise

    def awaits_store(self, ticket_id: str) -> bool:
        """Whether this ticket's state is among those waiting for the store."""
        return ticket_id in self._deferred

    async def _write(self, dispatches: list[Dispatch]) -> None:
        assert self._routed is not None
        await self._routed.record_first_dispatches(dispatches)
        self._outage.recovered()
        for written in dispatches:  # not those deferred again meanwhile
            if self._deferred.get(written.ticket_id) is written:
                del self._deferred[written.ticket_id]
        DEFERRED.set(len(self._deferred))

    async def __call__(self, event: envelope.Event) -> list[kafka.Output]:
        ticket = tickets.SegmentedTicket.model_validate(event.data)
        if self._is_copy(ticket.ticket_id, event.id):
            COPIES.inc()
            logger.info("copy of a routed ticket dropped", extra={"ticket_id": ticket.ticket_id})
            return []
        table = self._current_table()
        now = datetime.now(UTC)
        loads, states = self._load()
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
        # The segmented ticket as validated above (nothing else travels on), routed.
        data = ticket.with_routing(record).model_dump(mode="json")
        clocks = service_clocks.routed(targets_of(decision, table), now,
                                       table.policy(decision.department).calendar)
        lifecycle = events.TicketEvent(
            ticket_id=ticket.ticket_id, type=events.TicketEventType.ROUTED, occurred_at=now,
            received_at=ticket.received_at, department=decision.department,
            segment=ticket.segmentation.segment, reason=decision.reason,
            from_department=decision.overflowed_from, priority=decision.priority,
            first_response_deadline=decision.first_response_deadline, platform=ticket.platform,
            deadlines=clocks.deadlines())
        # Recorded last: a ticket whose outputs could not be built is not routed.
        self._routed_by[ticket.ticket_id] = event.id
        self._dispatches.append(Dispatch(
            ticket_id=ticket.ticket_id, department=decision.department,
            segment=ticket.segmentation.segment, priority=decision.priority,
            deadline=decision.first_response_deadline, steps=trace_steps(ticket, record),
            payload=data, at=now, event_id=event.id, customer_id=ticket.customer_id,
            platform=ticket.platform, clocks=clocks, correlation_id=event.correlation_id))
        return [
            kafka.Output(decision.queue_topic, ticket.customer_id, envelope.Event(
                type=events.TicketEventType.ROUTED, source=SOURCE, ticket_id=ticket.ticket_id,
                correlation_id=event.correlation_id, data=data, time=now)),
            kafka.Output(topics.EVENTS, ticket.ticket_id,
                         events.as_envelope(lifecycle, event.correlation_id, SOURCE)),
        ]


def targets_of(decision: routing.RoutingDecision,
               table: routing.RoutingTable) -> service_clocks.Targets:
    level = decision.level
    return service_clocks.Targets(
        decision.first_response_target,
        level.next_response_target if level else None,
        level.resolution_target if level else None, table.warning_share)


def trace_steps(ticket: tickets.SegmentedTicket,
                record: tickets.Routing) -> list[dict[str, Any]]:
    """The first steps of a ticket's trace: how it was segmented, then routed."""
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
