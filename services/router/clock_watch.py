"""The clock watch: warnings at a share of each target, escalation when a target is
breached, and a second level when the escalated ticket is still unanswered later.
Run periodically by the router that holds the escalation lease (escalation.LEASE).

What a ticket's clocks owe at a check (service_clocks.owed) is sent at once, for the
department holding it, under one claim of the ticket as read (clock_sending.py). A
record that
fails for a reason of the ticket's own, not an outage (checked_again_later): with an
escalation, the escalation is ended, its clocks marked as it marks them (without
clocks: marked escalated), rather than have every later check publish it again; if the
store refuses that too, and for warnings alone (there is nothing smaller to record),
the ticket is checked again CHECK_AGAIN_AFTER_FAILURE later, and they are published
again then. An escalation to a department whose lanes the router could not make
(missing_lanes.LanesMissing) waits so, checked again later, but the warnings owed with it
go out at once (clock_sending.EscalationWaits); a check logs those waiting once a department
(missing_lanes.Waiting), not once a ticket.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from prometheus_client import Counter

from services.core import faults
from services.router import (
    clock_sending,
    dispatch,
    escalation,
    missing_lanes,
    ports,
    routing,
    service_clocks,
)
from services.router.models import RoutedTicketRow

logger = logging.getLogger(__name__)

FAILED = Counter("routing_router_clock_checks_failed_total",
                 "Tickets whose service-level notice failed for a reason of their own"
                 " (checked again later; an escalation published and not recorded, ended;"
                 " the log names the ticket, or, for escalations waiting for a department's"
                 " missing lanes, counts them once a check)", ["department"])
# How long a ticket whose notice failed waits before it is checked again (a routing
# table fixed meanwhile is in force by then).
CHECK_AGAIN_AFTER_FAILURE = timedelta(minutes=15)
def export_failed_notices(table: routing.RoutingTable) -> None:
    """Each department of a routing table put in force at 0 failed notices, on every
    router, before any check: a series born at a first failure (after a lease takeover,
    a start), at 1, is no increase to Prometheus, and RoutingServiceLevelNoticesFailing
    would miss it."""
    for department in table.departments:
        FAILED.labels(department)


async def watch_clocks(routed: ports.Routed, publisher: ports.Publisher, *,
                       table: routing.RoutingTable, queue_for: dispatch.QueueFor,
                       now: datetime, claim_for: timedelta = ports.HANDOVER_CLAIM) -> int:
    """Send every notice due by `now` (the escalations of tickets without clocks first:
    escalation.owes_escalation); returns how many. An escalation of a ticket another
    hand-over holds (a transfer being published) waits for the next check. A ticket
    whose notice fails for a reason of its own (its stored clocks or copy, a deadline its
    department's calendar cannot give) is checked again CHECK_AGAIN_AFTER_FAILURE later,
    so that it holds up no other ticket's notices; an outage (the store, the broker) or
    a conflict in the store (a deadlock) ends the check, to be run again. Escalations
    waiting for a department's missing lanes are logged once a department, at its end."""
    sent = 0
    waiting = missing_lanes.Waiting()
    try:
        for due in (routed.due_for_escalation, routed.due_clocks):
            for row in await due(now):
                try:
                    turn = await clock_sending.send(routed, publisher, row, table=table,
                                                    queue_for=queue_for, now=now,
                                                    claim_for=claim_for)
                    sent += 0 if turn is None else turn.count
                except Exception as error:
                    sent += clock_sending.sent_before(error).count
                    if not await checked_again_later(routed, error, row, now,
                                                     waiting=waiting):
                        raise  # the check runs again
    finally:
        waiting.log(checked_again_at=(now + CHECK_AGAIN_AFTER_FAILURE).isoformat())
    return sent


async def checked_again_later(routed: ports.Routed, error: Exception, row: RoutedTicketRow,
                              now: datetime, *,
                              waiting: missing_lanes.Waiting | None = None) -> bool:
    """Whether a notice of `row`'s failed for a reason of the ticket's own (its stored
    clocks or copy, a deadline its department's calendar cannot give), not an outage or a
    conflict: if so it is counted and logged, once, and the ticket's clocks are checked
    again CHECK_AGAIN_AFTER_FAILURE later, not before, whether the watch or a hand-over
    (send_owed) sent it, and whether the ticket has clocks or not (its escalation:
    escalation.owes_escalation). An escalation published whose record failed so is
    ended instead (_ended), not checked again: it would be published again; only if
    the store refuses its end too is it checked again later, as one not published is.
    An escalation refused for its department's missing lanes is told `waiting` (the
    watch's check: logged once a department), if given, rather than logged."""
    failure: BaseException = error
    message = "a ticket's service-level notice failed; checked again later"
    read = row.next_clock_check
    if isinstance(error, clock_sending.EscalationWaits):
        failure, read = error.refused, error.read
    if isinstance(error, ports.Unrecorded):
        cause = error.__cause__ or error
        if await _ended(error):
            _failed(row, cause, "a ticket's service-level notice was published, and its"
                    " record failed for a reason of the ticket's own: ended, not published"
                    " again")
            return True
        failure, message = cause, ("a ticket's service-level notice was published, and its"
                                   " record and its end failed for a reason of the ticket's"
                                   " own; checked again later")
    if not ports.the_tickets_own(failure):
        return False
    checked_again_at = now + CHECK_AGAIN_AFTER_FAILURE
    if waiting is not None and isinstance(failure, missing_lanes.LanesMissing):
        FAILED.labels(row.department).inc()
        waiting.add(failure)
    else:
        _failed(row, failure, message, checked_again_at=checked_again_at.isoformat())
    # None, with clocks: not read as due (clocks unreadable); without: checked as due.
    if read is not None or row.service_clocks is None:
        await routed.postpone_clock_check(row.ticket_id, checked_again_at, read=read)
    return True


def _failed(row: RoutedTicketRow, error: BaseException, message: str, **extra: str) -> None:
    """A notice failed for the ticket's own reason, counted and logged by the ticket's id,
    with its error's class and reason (never the ticket's values)."""
    FAILED.labels(row.department).inc()
    logger.error(message, extra={"ticket_id": row.ticket_id, "department": row.department,
                                 "error_class": type(error).__name__,
                                 "reason": faults.reason(error),
                                 "where": faults.where(error), **extra})


async def _ended(error: ports.Unrecorded) -> bool:
    """Whether a notice published whose record failed for the ticket's own reason was
    ended: its clocks marked as it marks them (without clocks: marked escalated), where
    the store has the ticket, so that no check publishes it again (it was, every
    CHECK_AGAIN_AFTER_FAILURE, for as long as the store refused it). An end the store
    refuses for the ticket's own reason too is not (the notice is checked again later,
    as one not published is); an outage raises (the check runs again)."""
    try:
        await error.end()
    except Exception as failed:
        if not ports.the_tickets_own(failed):
            raise
        return False
    return True


def _checked_later(row: RoutedTicketRow, now: datetime) -> bool:
    """Whether the ticket's clocks are not to be checked before a later moment, though a
    notice is owed (checked_again_later: it failed), so that nothing sends it before."""
    return row.next_clock_check is not None and row.next_clock_check > now


# What is owed at a moment is sent at once (service_clocks.owed, clock_sending): the first
# turn sends it, and the escalation's marks and rebase leave nothing due by then (a
# deadline or warning counted in the new hours is later; a missed deadline is marked
# breached), so a second turn finds nothing owed and ends the loop.
_TURNS = 2


async def send_owed(routed: ports.Routed, publisher: ports.Publisher, row: RoutedTicketRow, *,
                    table: routing.RoutingTable, queue_for: dispatch.QueueFor, now: datetime,
                    claim_for: timedelta = ports.HANDOVER_CLAIM) -> clock_sending.Sent | None:
    """Every notice the ticket owes by `now` (service_clocks.owes_notice; for a ticket
    without clocks, its escalation: escalation.owes_escalation), sent as the watch sends
    it, for a hand-over or a priority change asked at `now` to come after them; what was
    (None: another hand-over holds the ticket, or a report came since: read it again). A
    publish that fails raises kafka.PublishFailed. A notice that fails for a reason of
    the ticket's own ends the sending, as the watch treats it (checked_again_later): the
    hand-over is not held up by it, and neither it nor another hand-over sends it again
    before the watch's next check of the ticket."""
    if row.service_clocks is None:  # routed before migration 0010: its one escalation
        if not escalation.owes_escalation(row, now):
            return clock_sending.Sent()
        try:
            return await clock_sending.send(routed, publisher, row, table=table,
                                            queue_for=queue_for, now=now,
                                            claim_for=claim_for)
        except Exception as error:
            if not await checked_again_later(routed, error, row, now):
                raise
            return clock_sending.Sent(postponed=True)
    sent = clock_sending.Sent()
    current: RoutedTicketRow | None = row
    for _ in range(_TURNS):
        if current is None or current.service_clocks is None \
                or _checked_later(current, now) or not service_clocks.owes_notice(
                    service_clocks.from_json(current.service_clocks), now):
            break
        try:
            turn = await clock_sending.send(routed, publisher, current, table=table,
                                            queue_for=queue_for, now=now,
                                            claim_for=claim_for)
        except Exception as error:
            if not await checked_again_later(routed, error, current, now):
                raise
            sent += clock_sending.sent_before(error) + clock_sending.Sent(postponed=True)
            break
        if turn is None:
            return None
        sent += turn
        current = await routed.get(row.ticket_id)
    return sent
