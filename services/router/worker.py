"""The router stage: a segmented ticket in, the ticket in its department's queue out
(the decision and what it produces: `service.route`)."""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from prometheus_client import Counter, Gauge

from services.core import batches, db, envelope, faults, kafka, tickets
from services.core.outage import StoreOutage
from services.router import intake_policy, missing_lanes, ports, routing, service
from services.router.store import Dispatch, KeptNotWritten, RoutedBefore, RoutedTickets, Stored

logger = logging.getLogger(__name__)

DEFERRED = Gauge("routing_router_deferred_ticket_states",
                 "Routed tickets whose state and trace wait for the SQL store to come back")
COPIES = Counter("routing_router_ticket_copies_dropped",
                 "Second copies of an already routed ticket, not routed again (a platform's"
                 " retry of a ticket whose first answer was lost)")
# The longest an attempt at a share waits for the hand-overs of its replayed routings'
# tickets being published (well inside the stage's transaction timeout, which its
# transform counts against).
CLAIM_WAIT_SECONDS = 5.0
HANDED_ON = Counter("routing_router_replays_after_handover",
                    "Routings replayed (their first records not committed) after a transfer"
                    " or escalation had put the ticket in another queue: only their"
                    " lifecycle event published again")

@dataclass
class _Share:
    """What one attempt at a share did so far, over its batches (a share taken record by
    record makes a batch of each; RouteTicket._share)."""

    published: set[str] = field(default_factory=set)  # tickets its batches published
    waited: bool = False  # for a hand-over being published (once an attempt at most)


@dataclass
class _Batch:
    """What a batch (one share of a partition's records) has routed so far."""

    dispatches: list[Dispatch] = field(default_factory=list)
    routed_by: dict[str, RoutedBefore] = field(default_factory=dict)  # routed before
    routed_now: set[str] = field(default_factory=set)  # by this batch
    blind: bool = False  # its lookup met the store down: decided without knowing
    deferred: set[str] = field(default_factory=set)  # tickets whose state waited then
    share: _Share = field(default_factory=_Share)  # what the share did before this batch


class RouteTicket:
    """Turns `ticket.segmented` events into `ticket.routed` ones (a pipeline Transform).

    The ticket's state and trace are written to the router's store before its records
    are produced; a replay of its routing (the records were not committed) publishes the
    ticket as stored, where the store says it is, and writes nothing (what was reported
    or handed over in between stands). A ticket goes to one department queue once:
    another copy of an already routed ticket (the intake published it twice when a
    platform retried after losing the first answer) is recognised by the id of the event
    that routed the first, and dropped; so is the same event twice in one batch. When
    the store is down, the batch is retried for the outage's grace period; past it,
    tickets are routed all the same and their states kept in memory until the store is
    back (`flush_deferred`). A ticket routed to a department whose lanes the router
    could not make (`missing_lanes`) is dead-lettered with the reason."""

    def __init__(self, current_table: Callable[[], routing.RoutingTable], *,
                 routed: RoutedTickets | None = None, load: ports.LoadView = ports.no_load,
                 outage: StoreOutage | None = None,
                 lanes: missing_lanes.MissingLanes | None = None) -> None:
        self._current_table = current_table
        self._missing_lanes = lanes or missing_lanes.MissingLanes()
        self._routed = routed
        self._load = load
        self._outage = outage or StoreOutage(float("inf"))  # default: wait for the store
        self._deferred: dict[str, Dispatch] = {}
        # Each share's batch is its own: the partitions' shares are routed at the same
        # time (batches.SharesApart), each attempt at one in a task of its own. A share
        # taken record by record (batches.Batches) makes a batch of each; what its
        # batches did so far (_Share: the tickets published, a wait for a hand-over) is
        # its task's, for as long as that attempt lasts.
        self._batch = batches.PerShare(f"router_batch_{id(self)}", _Batch)
        self._shares: weakref.WeakKeyDictionary[asyncio.Task[Any], _Share] = \
            weakref.WeakKeyDictionary()

    shares_apart = True  # the batch lives in the share's context (see _batch)

    async def prefetch(self, events: Sequence[envelope.Event]) -> None:
        """Which of the batch's tickets were routed before, and by which event (one query
        a batch)."""
        batch = _Batch(routed_by={d.ticket_id: RoutedBefore(d.event_id)
                                  for d in self._deferred.values()},
                       deferred=set(self._deferred), share=self._share())
        self._batch.start(batch)  # a new batch: not what a failed attempt left
        if self._routed is None:
            return
        try:
            batch.routed_by |= await self._routed.routed_before(
                {event.ticket_id for event in events if event.ticket_id})
        except db.STORE_ERRORS as error:
            if not db.is_outage(error) or not self._outage.failed():
                raise  # a bug, or within the grace period: the batch is retried
            batch.blind = True

    async def finish_batch(self) -> None:
        """Write the batch's states and traces, before its records are committed (a crash
        in between replays the batch, which publishes the tickets as stored). Those
        decided while the ticket's state waits for the store are written as kept. A batch
        whose lookup met the store down past its grace period does not ask it again (a
        store that does not answer would hold the batch a second time): its states are
        kept at once. The states kept through an outage are written by
        `flush_deferred`."""
        batch = self._batch.current()
        dispatches, batch.dispatches = batch.dispatches, []
        if self._routed is not None and dispatches:
            if batch.blind:
                self._keep(dispatches)
            else:
                await self._write(dispatches, deferred=batch.deferred)
            DEFERRED.set(len(self._deferred))
        batch.share.published.update(batch.routed_now)

    async def _write(self, dispatches: Sequence[Dispatch], *, deferred: set[str]) -> None:
        assert self._routed is not None
        kept = [d for d in dispatches if d.ticket_id in deferred]
        try:
            await self._routed.record_first_dispatches(
                [d for d in dispatches if d.ticket_id not in deferred])
            if kept:
                await self._routed.record_kept_dispatches(kept)
        except db.STORE_ERRORS as error:
            if not db.is_outage(error) or not self._outage.failed():
                raise  # a bug, or within the grace period: the batch is retried
            self._keep(dispatches)
            return
        self._outage.recovered()
        for written in kept:  # a state kept before it is older: done with
            waiting = self._deferred.get(written.ticket_id)
            if waiting is not None and waiting.at <= written.at:
                del self._deferred[written.ticket_id]

    def _keep(self, dispatches: Sequence[Dispatch]) -> None:
        """The batch's states, kept until the store is back (`flush_deferred`)."""
        if not self._deferred:
            logger.warning("router store down past its grace period: routing on,"
                           " ticket states kept until it is back")
        self._deferred.update((d.ticket_id, d) for d in dispatches)

    async def flush_deferred(self) -> None:
        """Write the states kept during an outage (called periodically); quiet while the
        store is still down."""
        if self._routed is None or not self._deferred:
            return
        pending = list(self._deferred.values())
        try:
            await self._routed.record_kept_dispatches(pending)
        except KeptNotWritten as partly:  # a bug in some: the others are done with
            self._written([d for d in pending if d.ticket_id not in partly.unwritten])
            raise
        except db.STORE_ERRORS as error:
            if not db.is_outage(error):
                raise
            return
        self._outage.recovered()
        self._written(pending)

    def _written(self, dispatches: Sequence[Dispatch]) -> None:
        for written in dispatches:  # not those a batch deferred again meanwhile
            if self._deferred.get(written.ticket_id) is written:
                del self._deferred[written.ticket_id]
        DEFERRED.set(len(self._deferred))

    def awaits_store(self, ticket_id: str) -> bool:
        """Whether this ticket's state is among those waiting for the store."""
        return ticket_id in self._deferred

    def _share(self) -> _Share:
        """What this attempt at a share did so far (nothing outside a task)."""
        task = asyncio.current_task()
        if task is None:
            return _Share()
        return self._shares.setdefault(task, _Share())

    async def __call__(self, event: envelope.Event) -> list[kafka.Output]:
        ticket = tickets.SegmentedTicket.model_validate(event.data)
        batch = self._batch.current()
        before = batch.routed_by.get(ticket.ticket_id)
        if ticket.ticket_id in batch.routed_now or ticket.ticket_id in batch.share.published \
                or (before is not None and before.event_id != event.id):
            COPIES.inc()
            logger.info("copy of a routed ticket dropped", extra={"ticket_id": ticket.ticket_id})
            return []
        if before is not None and before.stored is not None:
            outputs = await self._replayed(ticket.ticket_id, event, before.stored)
            self._missing_lanes.refuse(outputs)
            batch.routed_now.add(ticket.ticket_id)
            return outputs
        routed = service.route(ticket, table=self._current_table(), load=self._load,
                               now=datetime.now(UTC), event_id=event.id,
                               correlation_id=event.correlation_id,
                               lanes_missing=self._missing_lanes.departments)
        # A lane the router could not make holds no ticket: dead-lettered, not waited on.
        self._missing_lanes.refuse(routed.outputs)
        # Recorded last: a ticket whose outputs could not be built is not routed.
        batch.routed_now.add(ticket.ticket_id)
        batch.dispatches.append(routed.dispatch)
        return routed.outputs

    async def _replayed(self, ticket_id: str, event: envelope.Event,
                        stored: Stored) -> list[kafka.Output]:
        """The routing event itself again (its batch's records were not committed, its
        ticket stored): the ticket as stored, where the store says it is."""
        stored = await self._unclaimed(ticket_id, stored)
        if stored.handed_on:
            HANDED_ON.inc()
        logger.info("routing replayed: the ticket as stored", extra={
            "ticket_id": ticket_id, "handed_on": stored.handed_on})
        return service.replayed(stored, routed_by=event.id,
                                correlation_id=stored.correlation_id or event.correlation_id)

    async def _unclaimed(self, ticket_id: str, stored: Stored) -> Stored:
        """The ticket once no hand-over holds it: one being published (claimed, not yet
        recorded) decides where the ticket is, so it is waited for, up to
        CLAIM_WAIT_SECONDS once an attempt at its share (however many batches it makes),
        and the ticket read again; a claim standing then (or met after that wait) is
        Transient: the share is retried, and waits again."""
        now, until = datetime.now(UTC), stored.claimed_until
        if until is None or not intake_policy.handover_claimed(until, now):
            return stored
        batch = self._batch.current()
        if not batch.share.waited:  # else: read again at once
            batch.share.waited = True
            await asyncio.sleep(min((until - now).total_seconds(),
                                    CLAIM_WAIT_SECONDS))
        assert self._routed is not None  # a stored ticket was read from it
        again = (await self._routed.routed_before([ticket_id])).get(ticket_id)
        if again is not None and again.stored is not None and \
                not intake_policy.handover_claimed(again.stored.claimed_until,
                                                   datetime.now(UTC)):
            return again.stored
        raise faults.Transient("a hand-over of the ticket is being published: its routing"
                               " is replayed once the hand-over is recorded")
