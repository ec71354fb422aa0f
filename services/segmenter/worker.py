"""The segmenter stage: a received ticket in, the ticket tagged with its segment out."""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime

from services.core import envelope, events, kafka, pipeline, tickets, topics
from services.segmenter import context, rules
from services.segmenter.profiles import Customer

SOURCE = "/services/segmenter"

Lookup = Callable[..., Awaitable[Customer]]
Preload = Callable[[set[str]], Awaitable[None]]


class SegmentTicket:
    """Turns `ticket.received` events into `ticket.segmented` ones (a pipeline Transform)."""

    def __init__(self, *, lookup: Lookup, current_rules: Callable[[], rules.RuleSet],
                 preload: Preload | None = None, tally: Counter[str] | None = None) -> None:
        self._lookup = lookup
        self._preload = preload
        self._current_rules = current_rules
        # Tickets per known customer, flushed to the store in batches (not per ticket).
        self.tally: Counter[str] = tally if tally is not None else Counter()

    async def prefetch(self, events: Sequence[envelope.Event]) -> None:
        """Load the batch's customers in one query (a record whose data is unreadable is
        left to __call__, which sends it to the dead letters)."""
        if self._preload is not None:
            await self._preload({str(e.data["customer_id"]) for e in events
                                 if isinstance(e.data.get("customer_id"), str)})

    async def __call__(self, event: envelope.Event) -> list[kafka.Output]:
        ticket = tickets.Ticket.model_validate(event.data)
        now = datetime.now(UTC)
        customer = await self._lookup(ticket.customer_id, now=now)
        rule_set = self._current_rules()
        try:
            decision = rule_set.decide(context.build(customer, ticket, today=now.date()))
        except rules.RuleEvaluationError as exc:
            raise pipeline.Unprocessable(str(exc)) from exc
        if customer.profile is not None:
            self.tally[customer.customer_id] += 1
        segmentation = tickets.Segmentation(
            segment=decision.segment, rule=decision.rule, rules_version=decision.rules_version,
            customer_known=customer.profile is not None, tier=str(customer.tier),
            decided_by=dict(decision.decided_by))
        lifecycle = events.TicketEvent(
            ticket_id=ticket.ticket_id, type=events.TicketEventType.SEGMENTED,
            occurred_at=now, received_at=ticket.received_at, segment=decision.segment)
        return [
            kafka.Output(topics.SEGMENTED, ticket.customer_id, envelope.Event(
                type=events.TicketEventType.SEGMENTED, source=SOURCE,
                ticket_id=ticket.ticket_id, correlation_id=event.correlation_id,
                # The ticket as received (validated above), plus its segmentation.
                data={**event.data, "segmentation": segmentation.model_dump(mode="json")},
                time=now)),
            kafka.Output(topics.EVENTS, ticket.ticket_id,
                         events.as_envelope(lifecycle, event.correlation_id, SOURCE)),
        ]
