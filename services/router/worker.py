"""The router stage: a segmented ticket in, the ticket in its department's queue out."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from services.core import envelope, events, kafka, tickets, topics
from services.router import routing

SOURCE = "/services/router"


class RouteTicket:
    """Turns `ticket.segmented` events into `ticket.routed` ones (a pipeline Transform)."""

    def __init__(self, current_table: Callable[[], routing.RoutingTable]) -> None:
        self._current_table = current_table

    async def __call__(self, event: envelope.Event) -> list[kafka.Output]:
        ticket = tickets.SegmentedTicket.model_validate(event.data)
        table = self._current_table()
        decision = routing.decide(ticket.segmentation.segment, table)
        routing_record = tickets.Routing(
            department=decision.department,
            reason=decision.reason,
            table_version=table.version,
            routed_at=datetime.now(UTC),
        )
        routed_event = envelope.Event(
            type=events.TicketEventType.ROUTED,
            source=SOURCE,
            ticket_id=ticket.ticket_id,
            correlation_id=event.correlation_id,
            # The segmented ticket as it came (validated above), plus its routing.
            data={**event.data, "routing": routing_record.model_dump(mode="json")},
        )
        lifecycle = events.TicketEvent(
            ticket_id=ticket.ticket_id,
            type=events.TicketEventType.ROUTED,
            occurred_at=routing_record.routed_at,
            received_at=ticket.received_at,
            department=decision.department,
            segment=ticket.segmentation.segment,
            reason=decision.reason,
        )
        return [
            kafka.Output(topics.department_queue(decision.department), ticket.customer_id,
                         routed_event),
            kafka.Output(topics.EVENTS, ticket.ticket_id,
                         events.as_envelope(lifecycle, event.correlation_id, SOURCE)),
        ]

