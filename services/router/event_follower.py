"""The router's event follower (a stage on `tickets.events`, group `router-tracker`): it
learns which tickets were answered and which wait on their customer, which moves their
service-level clocks (published as `ticket.deadlines_changed`); `GET /v1/tickets/{id}`
shows their state."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from services.core import envelope, events, faults, kafka, lifecycle, topics
from services.router import routing, service_clocks
from services.router.dispatch import SOURCE
from services.router.store import ClockChange, Report, Reported, RoutedTickets


class StateNotWrittenYet(faults.Transient):
    """A report on a ticket whose state waits for the store: retried, not dropped."""


def moves_clocks(event_type: str) -> bool:
    return lifecycle.pauses_clocks(event_type) or lifecycle.resumes_clocks(event_type) \
        or lifecycle.counts_as_first_response(event_type)


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
        # The batch's reports as recorded, by their event's id.
        self._recorded: dict[str, tuple[events.TicketEvent, Reported | None]] = {}

    async def prefetch(self, batch: Sequence[envelope.Event]) -> None:
        """Record the batch's reports (their clocks moved in the current routing
        table's calendars), in the order they were published."""
        followed = [event for event in batch if event.type in self.reads]
        reports = [events.read(event) for event in followed]
        table = self._current_table() if self._current_table else None
        recorded = await self._routed.record_reports([
            Report(report.ticket_id, report.type, report.occurred_at,
                   move_clocks=_mover(report, table), event_id=event.id)
            for event, report in zip(followed, reports, strict=True)])
        self._recorded = {event.id: (report, reported) for event, report, reported
                          in zip(followed, reports, recorded, strict=True)}

    async def __call__(self, event: envelope.Event) -> list[kafka.Output]:
        if event.type not in self.reads:
            return []
        if event.id not in self._recorded:  # given alone, or again in its batch
            await self.prefetch([event])
        report, recorded = self._recorded.pop(event.id)
        # A report on a ticket not routed yet (events raced ahead) changes nothing here;
        # the metrics service still places it on the ticket's timeline.
        if recorded is None:
            if self._awaits_store(report.ticket_id):
                raise StateNotWrittenYet(report.ticket_id)
            return []
        if recorded.clocks is None or not moves_clocks(report.type):
            return []
        # Written from the state after the report, under an id derived from the report's,
        # so a replay writes the same again.
        changed = deadlines_changed(report.ticket_id, recorded, report.occurred_at)
        return [kafka.Output(topics.EVENTS, report.ticket_id, events.as_envelope(
            changed, event.correlation_id, SOURCE,
            event_id=envelope.derived_id(event.id, changed.type)))]


def _mover(report: events.TicketEvent, table: routing.RoutingTable | None) -> ClockChange:
    """How the report moves a ticket's clocks, in its department's calendar."""

    def move(clocks: service_clocks.TicketClocks,
             department: str) -> service_clocks.TicketClocks:
        calendar = table.policy(department).calendar if table else None
        return service_clocks.reported(clocks, report.type, report.occurred_at, calendar)

    return move


def deadlines_changed(ticket_id: str, recorded: Reported, at: datetime) -> events.TicketEvent:
    """The clocks after a report: their deadlines, whether paused, and the outcome of
    each clock it stopped (a clock escalated before was counted missed then), for the
    department that held the ticket at the report's time (credited with the outcomes)."""
    assert recorded.clocks is not None
    outcomes = {clock.key: clock.outcome for clock in recorded.clocks.clocks
                if clock.stopped_at == at and clock.level == 0 and clock.outcome}
    return events.TicketEvent(
        ticket_id=ticket_id, type=events.TicketEventType.DEADLINES_CHANGED, occurred_at=at,
        department=recorded.held_by, segment=recorded.segment,
        deadlines=recorded.clocks.deadlines(), paused=recorded.clocks.paused,
        outcomes=outcomes or None)
