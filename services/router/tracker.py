"""The router follows `tickets.events` so that it knows which tickets were answered:
that stops their escalation, and `GET /v1/tickets/{id}` shows their state."""

from __future__ import annotations

from services.core import envelope, events, kafka
from services.router.store import RoutedTickets


class FollowTicketEvent:
    """A pipeline Transform that publishes nothing."""

    def __init__(self, routed: RoutedTickets) -> None:
        self._routed = routed

    async def __call__(self, event: envelope.Event) -> list[kafka.Output]:
        if event.type not in events.DEPARTMENT_REPORTS:
            return []
        report = events.TicketEvent.model_validate(event.data)
        # A report on a ticket not routed yet (events raced ahead) changes nothing here;
        # the metrics service still places it on the ticket's timeline.
        await self._routed.record_report(report.ticket_id, report.type, report.occurred_at)
        return []
