"""The router's event follower (a stage on `tickets.events`, group `router-tracker`): it
learns which tickets were answered and which wait on their customer, which moves their
service-level clocks (published as `ticket.deadlines_changed`); `GET /v1/tickets/{id}`
shows their state."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from datetime import datetime

from services.core import envelope, events, kafka, lifecycle, topics
from services.router import routing, service_clocks
from services.router.clocks import last_change
from services.router.dispatch import SOURCE
from services.router.store import ClockChange, Report, Reported, RoutedTickets


def moves_clocks(event_type: str) -> bool:
    return lifecycle.pauses_clocks(event_type) or lifecycle.resumes_clocks(event_type) \
        or lifecycle.counts_as_first_response(event_type)


# A batch's reports as recorded: each one's report and outcome, by its event's id (in
# the order published, for an event published twice).
Recorded = dict[str, deque[tuple[events.TicketEvent, Reported | None]]]


class FollowTicketEvent:
    """A pipeline Transform: a report in, the ticket's clocks after it out. The other
    events on the topic are passed over unread (`reads`). A batch's reports are
    recorded together, in one transaction, before any is transformed (`prefetch`)."""

    reads = frozenset(events.REPORTS)

    def __init__(self, routed: RoutedTickets, *,
                 current_table: Callable[[], routing.RoutingTable] | None = None,
                 awaits_store: Callable[[str], bool] = lambda _ticket_id: False) -> None:
        self._routed = routed
        self._current_table = current_table
        self._awaits_store = awaits_store
        self._recorded: Recorded = {}

    async def prefetch(self, batch: Sequence[envelope.Event]) -> None:
        self._recorded = await self._record(
            [event for event in batch if event.type in self.reads])

    async def _record(self, followed: Sequence[envelope.Event]) -> Recorded:
        """Record the reports (their clocks moved in the current routing table's
        calendars), in the order they were published."""
        reports = [events.read(event) for event in followed]
        table = self._current_table() if self._current_table else None
        # Told before the store is read: a ticket whose state waited for the store then,
        # and is not found, has the batch retried (StateNotWrittenYet), nothing recorded.
        awaited = {report.ticket_id for report in reports
                   if self._awaits_store(report.ticket_id)}
        outcomes = await self._routed.record_reports([
            Report(report.ticket_id, report.type, report.occurred_at,
                   move_clocks=clock_change(report, table), event_id=event.id)
            for event, report in zip(followed, reports, strict=True)], awaited=awaited)
        recorded: Recorded = {}
        for event, report, outcome in zip(followed, reports, outcomes, strict=True):
            recorded.setdefault(event.id, deque()).append((report, outcome))
        return recorded

    async def __call__(self, event: envelope.Event) -> list[kafka.Output]:
        if event.type not in self.reads:
            return []
        outcomes = self._recorded.get(event.id) or (await self._record([event]))[event.id]
        report, recorded = outcomes.popleft()
        # A report on a ticket not routed yet (events raced ahead) changes nothing here;
        # the metrics service still places it on the ticket's timeline.
        if recorded is None or recorded.clocks is None or not moves_clocks(report.type):
            return []
        # Written from the state after the report, under an id derived from the report's,
        # so a replay writes the same again.
        changed = deadlines_changed(report.ticket_id, recorded, report.occurred_at)
        return [kafka.Output(topics.EVENTS, report.ticket_id, events.as_envelope(
            changed, event.correlation_id, SOURCE,
            event_id=envelope.derived_id(event.id, changed.type)))]


def clock_change(report: events.TicketEvent, table: routing.RoutingTable | None
                 ) -> ClockChange:
    """How the report moves a ticket's clocks, in its department's calendar."""

    def move(clocks: service_clocks.TicketClocks,
             department: str) -> service_clocks.TicketClocks:
        calendar = table.policy(department).calendar if table else None
        return service_clocks.reported(clocks, report.type, report.occurred_at, calendar)

    return move


def deadlines_changed(ticket_id: str, recorded: Reported, at: datetime) -> events.TicketEvent:
    """The clocks after a report: their deadlines, whether paused, and the outcome of
    each clock it stopped (a clock escalated before was counted missed then), for the
    department that held the ticket at the report's time (credited with the outcomes).
    A clock the report stopped stopped at its date, or at the clock's last change if that
    came later (clocks.taken_at): so its outcome is that of each clock stopped since the
    report's date (one stopped before by a later-dated report is said again: the
    metrics count an outcome once, by its clock's key). `as_of`: the first-response
    clock's last change, by which the metrics order it against a hand-over's deadlines."""
    assert recorded.clocks is not None
    outcomes = {clock.key: clock.outcome for clock in recorded.clocks.clocks
                if clock.stopped_at is not None and clock.stopped_at >= at
                and clock.level == 0 and clock.outcome}
    first = recorded.clocks.current("first_response")
    return events.TicketEvent(
        ticket_id=ticket_id, type=events.TicketEventType.DEADLINES_CHANGED, occurred_at=at,
        department=recorded.held_by, segment=recorded.segment,
        deadlines=recorded.clocks.deadlines(), paused=recorded.clocks.paused,
        outcomes=outcomes or None, as_of=None if first is None else last_change(first))
