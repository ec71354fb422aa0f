"""The router follows `tickets.events` so that it knows which tickets were answered:
that stops their escalation, and `GET /v1/tickets/{id}` shows their state."""

from __future__ import annotations

from collections.abc import Callable

from services.core import envelope, events, faults, kafka
from services.router.store import RoutedTickets


class StateNotWrittenYet(faults.Transient):
    """A report on a ticket whose state waits for the store: retried, not dropped."""


class FollowTicketEvent:
    """A pipeline Transform that publishes nothing."""

    def __init__(self, routed: RoutedTickets, *,
                 awaits_store: Callable[[str], bool] = lambda _ticket_id: False) -> None:
        self._routed = routed
        self._awaits_store = awaits_store

    async def __call__(self, event: envelope.Event) -> list[kafka.Output]:
        if event.type not in events.DEPARTMENT_REPORTS:
            return []
        report = events.read(event)
        # A report on a ticket not routed yet (events raced ahead) changes nothing here;
        # the metrics service still places it on the ticket's timeline.
        recorded = await self._routed.record_report(report.ticket_id, report.type,
                                                    report.occurred_at)
        if not recorded and self._awaits_store(report.ticket_id):
            raise StateNotWrittenYet(report.ticket_id)
        return []
