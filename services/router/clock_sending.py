"""Sending what a ticket's clocks owe at a moment (service_clocks.owed), for the clock
watch and for a hand-over that sends them first (clock_watch.py: which tickets, and what
follows a failure). It is sent at once, for the department holding the ticket: its
warnings, then one escalation of every clock breached or at its second level, together,
an event per clock (service_clocks.escalation: where to; clock_notices builds them), all
published under one claim of the ticket as read (ports.publish_claimed), before the
clocks record them and end it: two sendings at once (the watch's, a hand-over's on
another router) publish them once; a crash in between sends them again at the next check
(at least once), rather than never. An escalation to a department whose lanes the router
could not make (missing_lanes.LanesMissing) does not hold back the warnings owed with it:
they go out alone, and the escalation waits (EscalationWaits).
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from prometheus_client import Counter

from services.router import (
    clock_notices,
    dispatch,
    escalation,
    missing_lanes,
    ports,
    routing,
    service_clocks,
)
from services.router.models import RoutedTicketRow

logger = logging.getLogger(__name__)

# What this router published, at least once (a notice published again after a crash
# counts again): the metrics service counts each notice once
# (routing_target_warnings_total, routing_target_escalations_total), which the alerts read.
WARNINGS = Counter("routing_router_target_warnings_total",
                   "Warnings this router published at a share of a service-level target (at"
                   " least once; routing_target_warnings_total counts each once)",
                   ["department", "target"])
LEVELS = Counter("routing_router_target_escalations_total",
                 "Escalations of breached service-level targets this router published, by"
                 " level (2: still unanswered after the first; at least once:"
                 " routing_target_escalations_total counts each once)",
                 ["department", "target", "level"])


@dataclass(frozen=True)
class Sent:
    """What one sending of a ticket's notices sent: how many, and the escalations; and
    whether it postponed the ticket's next check (a notice failed for the ticket's own
    reason: clock_watch.checked_again_later), which a row read before no longer shows."""

    count: int = 0
    escalated: tuple[clock_notices.Escalated, ...] = ()
    postponed: bool = False

    def __add__(self, other: Sent) -> Sent:
        return Sent(self.count + other.count, (*self.escalated, *other.escalated),
                    self.postponed or other.postponed)


class EscalationWaits(Exception):
    """A notice whose escalation was refused, the department it goes to lacking its lanes
    (`refused`), and whose warnings went out alone (`sent`): the escalation waits, the
    ticket checked again later (clock_watch.checked_again_later) from the clocks' next
    check as the warnings' record left it (`read`)."""

    def __init__(self, refused: missing_lanes.LanesMissing, sent: Sent,
                 read: datetime | None) -> None:
        super().__init__(str(refused))
        self.refused, self.sent, self.read = refused, sent, read


def sent_before(error: Exception) -> Sent:
    """What a sending that failed with `error` sent all the same."""
    return error.sent if isinstance(error, EscalationWaits) else Sent()


async def send(routed: ports.Routed, publisher: ports.Publisher, row: RoutedTicketRow, *,
                table: routing.RoutingTable, queue_for: dispatch.QueueFor, now: datetime,
                claim_for: timedelta) -> Sent | None:
    """What `row` owes by `now` sent (the clock watch's, a hand-over's: clock_watch), as
    `_notice` sends it for a ticket with clocks, and for one without (routed before
    migration 0010), its one escalation."""
    if row.service_clocks is not None:
        return await _notice(routed, publisher, row, table=table, queue_for=queue_for,
                             now=now, claim_for=claim_for)
    escalated = await escalation.escalate(routed, publisher, row, table=table,
                                          queue_for=queue_for, now=now,
                                          claim_for=claim_for)
    return None if escalated is None else Sent(len(escalated), escalated)


async def _notice(routed: ports.Routed, publisher: ports.Publisher, row: RoutedTicketRow, *,
                  table: routing.RoutingTable, queue_for: dispatch.QueueFor, now: datetime,
                  claim_for: timedelta) -> Sent | None:
    """What the ticket's clocks owe by `now` (service_clocks.owed), sent at once for the
    department holding it: its warnings, then one escalation of every clock breached or
    at its second level, published together under one claim of the ticket as `row` read
    it (its clocks too: claim_handover), and recorded with it, so that two sendings at
    once (the watch's and a hand-over's, on two routers) publish each notice once; what
    was sent (None: another holds the ticket, or it changed since it was read, a notice
    sent meanwhile or a report: nothing published, the next check sees it anew)."""
    assert row.service_clocks is not None
    state = service_clocks.from_json(row.service_clocks)
    owed = service_clocks.owed(state, now)
    escalation = clock_notices.escalation(row, owed, state, table=table,
                                          queue_for=queue_for, now=now) \
        if owed.escalated else None
    try:
        return await _published(routed, publisher, row, state, owed, escalation, now=now,
                                claim_for=claim_for)
    except missing_lanes.LanesMissing as refused:
        if escalation is None or not owed.warnings:
            raise
        # The escalation's department alone is refused: the warnings owed go out now, as
        # they would without it, and the escalation waits (clock_watch.checked_again_later).
        warned = await _published(routed, publisher, row, state,
                                  service_clocks.Owed(warnings=owed.warnings), None,
                                  now=now, claim_for=claim_for)
        if warned is None:
            return None
        left = clock_notices.warned(owed.warnings)(state, row.department)
        raise EscalationWaits(refused, warned, left.next_check()) from refused


async def _published(routed: ports.Routed, publisher: ports.Publisher, row: RoutedTicketRow,
                     state: service_clocks.TicketClocks, owed: service_clocks.Owed,
                     escalation: clock_notices.Escalation | None, *, now: datetime,
                     claim_for: timedelta) -> Sent | None:
    """`owed` (its escalation, if any, as `escalation`) published under one claim and
    recorded, as `_notice` says."""
    outputs = [*(clock_notices.warning(row, clock, state, now) for clock in owed.warnings),
               *(escalation.outputs if escalation else ())]
    claim = await ports.publish_claimed(routed, publisher, row, outputs, hold=claim_for)
    if claim is None:
        return None
    warned = clock_notices.warned(owed.warnings)
    record: ports.Record
    if escalation is None:
        record = functools.partial(_record_warnings, routed, row.ticket_id, warned,
                                   claim=claim)
    else:
        def moved(current: service_clocks.TicketClocks,
                  department: str) -> service_clocks.TicketClocks:
            return escalation.move(warned(current, department), department)

        record = functools.partial(
            routed.record_handover, row.ticket_id, department=escalation.to,
            steps=escalation.steps, ticket=escalation.ticket, now=now, move_clocks=moved,
            claim=claim, escalated=bool(owed.breached))
    ended = None
    if escalation is not None:
        def marked(current: service_clocks.TicketClocks,
                   department: str) -> service_clocks.TicketClocks:
            return escalation.mark(warned(current, department), department)

        ended = functools.partial(routed.update_clocks, row.ticket_id, marked, claim=claim,
                                  claimed_only=True)
    await ports.record_published(record, claim=claim, ticket_id=row.ticket_id, end=ended)
    for clock in owed.warnings:
        WARNINGS.labels(row.department, clock.target).inc()
        logger.info("service-level warning", extra={"ticket_id": row.ticket_id,
                                                    "department": row.department,
                                                    "target": clock.target})
    if escalation is None:
        return Sent(owed.count)
    for each in escalation.escalated:
        LEVELS.labels(each.from_department, each.target, str(each.level)).inc()
    logger.info("service-level target escalated", extra={
        "ticket_id": row.ticket_id, "department": row.department,
        "target": ",".join(each.target for each in escalation.escalated),
        "level": ",".join(str(each.level) for each in escalation.escalated),
        "escalated_to": escalation.to})
    return Sent(owed.count, escalation.escalated)


async def _record_warnings(routed: ports.Routed, ticket_id: str,
                           warned: clock_notices.ClockChange,
                           *, claim: datetime, again: bool) -> None:
    # Marking a warning sent twice marks it once: tried `again`, it is applied again.
    await routed.update_clocks(ticket_id, warned, claim=claim)
