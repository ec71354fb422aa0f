"""The segmenter stage: a received ticket in, the ticket tagged with its segment out."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from prometheus_client import Counter as Counted

from services.core import batches, db, envelope, events, kafka, tickets, tiers, topics
from services.core.outage import StoreOutage
from services.segmenter import rule_failures, rules, service
from services.segmenter.profiles import Customer

SOURCE = events.SEGMENTER_SOURCE
STORE_DOWN = "customer store unavailable"

logger = logging.getLogger(__name__)

DEGRADED = Counted("routing_segmenter_degraded_tickets",
                   "Tickets given the degraded segment: the customer store was down past its"
                   " grace period and the customer not in the cache")


@dataclass
class _Batch:
    """What one batch (a partition's share of records, or one record of it when they
    are taken one by one) has found so far."""

    cache_only: bool = False  # the store is down past its grace: go by the cache


Lookup = Callable[..., Awaitable[Customer]]
Cached = Callable[..., Customer | None]
Preload = Callable[[set[str]], Awaitable[bool]]


class SegmentTicket:
    """Turns `ticket.received` events into `ticket.segmented` ones (a pipeline Transform).

    When the customer store is down, tickets of cached customers are segmented as usual.
    For the others the batch is retried for the outage's grace period; past it they get
    the degraded segment, flagged on the ticket, so tickets keep flowing."""

    def __init__(self, *, lookup: Lookup, current_rules: Callable[[], rules.RuleSet],
                 preload: Preload | None = None, cached: Cached | None = None,
                 outage: StoreOutage | None = None,
                 tally: Counter[str] | None = None) -> None:
        self._lookup = lookup
        self._preload = preload
        self._cached = cached
        self._outage = outage or StoreOutage(float("inf"))  # default: wait for the store
        self._current_rules = current_rules
        # Tickets per known customer, flushed to the store in batches (not per ticket);
        # a share's count joins the tally once the share is committed, so a share
        # processed again after a failed attempt is not counted twice.
        self.tally: Counter[str] = tally if tally is not None else Counter()
        # Each attempt at a share runs in a task of its own, its state in that task's
        # context: several partitions' shares are segmented at the same time
        # (batches.SharesApart), and a failed attempt's count goes with its task.
        self._batch = batches.PerShare(f"segmenter_batch_{id(self)}", _Batch)
        self._counted = batches.PerShare(f"segmenter_counted_{id(self)}", Counter[str])

    shares_apart = True  # the batch and its count live in the share's context

    async def prefetch(self, events: Sequence[envelope.Event]) -> None:
        """Load the batch's customers in one query (a record whose data is unreadable is
        left to __call__, which sends it to the dead letters)."""
        self._batch.start()  # a new batch: not what a failed attempt left
        if self._preload is None:
            return
        try:
            if await self._preload({str(e.data["customer_id"]) for e in events
                                    if isinstance(e.data.get("customer_id"), str)}):
                self._outage.recovered()
        except db.STORE_ERRORS as error:
            if not db.is_outage(error) or not self._go_on_without_store():
                raise  # a bug, or within the grace period: the batch is retried

    def committed(self) -> None:
        """The share is committed: its tickets count (batches.Committing)."""
        counted = self._counted.current()
        self.tally.update(counted)
        counted.clear()

    async def _customer(self, customer_id: str, now: datetime) -> Customer | None:
        """The customer, or None when the store is down (past its grace) and the cache
        does not hold them."""
        if not self._batch.current().cache_only:
            try:
                return await self._lookup(customer_id, now=now)
            except db.STORE_ERRORS as error:
                if not db.is_outage(error) or not self._go_on_without_store():
                    raise
        return self._cached(customer_id, now=now) if self._cached else None

    def _go_on_without_store(self) -> bool:
        """After a failure of the store: False within its grace period (retry the batch),
        True past it (this batch goes by the cache)."""
        if not self._outage.failed():
            return False
        batch = self._batch.current()
        if not batch.cache_only:
            logger.warning("customer store down past its grace period: segmenting from the"
                           " cache, other customers get the degraded segment")
        batch.cache_only = True
        return True

    async def __call__(self, event: envelope.Event) -> list[envelope.Record]:
        ticket = tickets.Ticket.model_validate(event.data)
        now = datetime.now(UTC)
        customer = await self._customer(ticket.customer_id, now)
        rule_set = self._current_rules()
        if customer is None:
            DEGRADED.inc()
            segmentation = tickets.Segmentation(
                segment=tickets.DEGRADED_SEGMENT, rule="", rules_version=rule_set.version,
                customer_known=False, tier=tiers.UNKNOWN, degraded=STORE_DOWN)
            return self._records(event, ticket, segmentation, now)
        decision = service.segment(customer, ticket, rule_set, now=now).decision
        self._count_failures(rule_set, decision, ticket.ticket_id)
        segmentation = tickets.Segmentation(
            segment=decision.segment, rule=decision.rule, rules_version=decision.rules_version,
            customer_known=customer.profile is not None, tier=customer.tier,
            decided_by=dict(decision.decided_by))
        # Written out here, not by the stage, so that a ticket whose records cannot be
        # (envelope.Unserialisable: it is dead-lettered) is not counted.
        records = self._records(event, ticket, segmentation, now)
        if customer.profile is not None:  # counted once its share is committed
            self._counted.current()[customer.customer_id] += 1
        return records

    def _count_failures(self, rule_set: rules.RuleSet, decision: rules.Decision,
                        ticket_id: str) -> None:
        for failure in decision.failed:
            rule_failures.count(failure.rule)
            # The rule and CEL's status code only: CEL's message may quote the data.
            logger.warning("a segment rule failed on a ticket's data: it did not hold",
                           extra={"ticket_id": ticket_id, "rule": failure.rule,
                                  "kind": failure.kind, "rules_version": rule_set.version})

    @staticmethod
    def _records(event: envelope.Event, ticket: tickets.Ticket,
                 segmentation: tickets.Segmentation, now: datetime) -> list[envelope.Record]:
        lifecycle = events.TicketEvent(
            ticket_id=ticket.ticket_id, type=events.TicketEventType.SEGMENTED,
            occurred_at=now, received_at=ticket.received_at, segment=segmentation.segment)
        return kafka.records([
            kafka.Output(topics.SEGMENTED, ticket.customer_id, envelope.Event(
                type=events.TicketEventType.SEGMENTED, source=SOURCE,
                ticket_id=ticket.ticket_id, correlation_id=event.correlation_id,
                # The ticket as received (validated above: nothing else travels on).
                data=ticket.segmented_data(segmentation),
                time=now)),
            kafka.Output(topics.EVENTS, ticket.ticket_id,
                         events.as_envelope(lifecycle, event.correlation_id, SOURCE)),
        ])
