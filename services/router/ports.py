"""The router's adapters as its use cases see them (services/router/service/): the
routed-ticket store, the intake keys, a publisher, the routing table in force and the
departments' load. The real ones are wired by services/router/bootstrap.py; the unit
tests wire recording fakes through the same door."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from services.core import db, faults, kafka, tickets
from services.core.settings import Settings
from services.core.transactional_publisher import longest_publish
from services.router import held_tickets, overflow, routing
from services.router.models import IntakeKeyRow, RoutedTicketRow
from services.router.store import ClockChange

logger = logging.getLogger(__name__)

Clock = Callable[[], datetime]
LoadView = Callable[[], tuple[Mapping[str, overflow.DepartmentLoad],
                              Mapping[str, overflow.OverflowState]]]


def utc_now() -> datetime:
    return datetime.now(UTC)


def no_load() -> tuple[Mapping[str, overflow.DepartmentLoad],
                       Mapping[str, overflow.OverflowState]]:
    return {}, {}


class Publisher(Protocol):
    """Returns once the broker acknowledged every output; kafka.PublishFailed if not."""

    async def publish(self, outputs: Sequence[kafka.Publishable]) -> None: ...


class Table(Protocol):
    """The routing table in force (services/core/live_config.py follows its file)."""

    @property
    def current(self) -> routing.RoutingTable: ...


class Keys(Protocol):
    """The intake's `Idempotency-Key`s, of tickets and of reports
    (services/router/intake_keys.py)."""

    async def claim(self, key: str, *, fingerprint: str, ticket_id: str, now: datetime,
                    correlation_id: str | None = None, event_id: str | None = None,
                    occurred_at: datetime | None = None) -> IntakeKeyRow: ...

    async def accepted(self, key: str, *, correlation_id: str) -> None: ...

    async def unpublished(self, key: str) -> None: ...

    async def find(self, key: str) -> IntakeKeyRow | None: ...


def claim_hold(settings: Settings) -> timedelta:
    """How long a claim taken before a publish stands: an Idempotency-Key's (a ticket's or
    a report's: older, it was left by a request that died, and a retry takes it over) and
    a hand-over's (Routed.claim_handover). Longer than the longest publish, by one more
    PRODUCE_TIMEOUT_SECONDS for the store's write that follows it."""
    return longest_publish(settings) + timedelta(seconds=settings.produce_timeout_seconds)


HANDOVER_CLAIM = claim_hold(Settings.model_construct())  # the defaults' (the use cases')


class Held(Protocol):
    """The tickets held as dead letters (services/router/held_store.py)."""

    async def get(self, ticket_id: str) -> held_tickets.Held | None: ...


class Routed(Protocol):
    """The routed tickets' state and trace (services/router/store.py)."""

    async def get(self, ticket_id: str) -> RoutedTicketRow | None: ...

    async def claim_handover(self, row: RoutedTicketRow, *,
                             hold: timedelta) -> datetime | None: ...

    async def release_handover(self, ticket_id: str, claim: datetime) -> None: ...

    async def record_handover(self, ticket_id: str, *, department: str,
                              steps: Sequence[dict[str, Any]],
                              ticket: tickets.RoutedTicket | None, now: datetime,
                              move_clocks: ClockChange | None = None,
                              claim: datetime | None = None, escalated: bool = False,
                              again: bool = False) -> None: ...

    async def record_priority_change(self, ticket_id: str, *, priority: int,
                                     step: dict[str, Any], move_clocks: ClockChange,
                                     claim: datetime | None = None,
                                     again: bool = False) -> None: ...

    async def update_clocks(self, ticket_id: str, change: ClockChange, *,
                            claim: datetime | None = None,
                            claimed_only: bool = False) -> None: ...

    async def due_clocks(self, now: datetime, *, limit: int = 200) -> list[RoutedTicketRow]: ...

    async def due_for_escalation(self, now: datetime, *,
                                 limit: int = 200) -> list[RoutedTicketRow]: ...

    async def mark_escalated(self, ticket_id: str, *,
                             claim: datetime | None = None) -> None: ...

    async def postpone_clock_check(self, ticket_id: str, until: datetime, *,
                                   read: datetime | None) -> None: ...

    async def open_tickets(self, departments: Collection[str]) -> dict[str, int]: ...


async def publish_claimed(routed: Routed, publisher: Publisher, row: RoutedTicketRow,
                          outputs: Sequence[kafka.Publishable], *,
                          hold: timedelta) -> datetime | None:
    """A hand-over's (or a priority change's) publish: the ticket claimed as `row` read
    it, then `outputs` published. The claim, for the record to end (None: not claimed,
    nothing published); a publish that fails releases it and raises."""
    claim = await routed.claim_handover(row, hold=hold)
    if claim is None:
        return None
    try:
        await publisher.publish(outputs)
    except Exception:
        await routed.release_handover(row.ticket_id, claim)
        raise
    return claim


def the_tickets_own(error: BaseException) -> bool:
    """Whether a hand-over's notice (a clock's warning or escalation) failed for a reason
    of the ticket's own (its stored clocks or copy, a deadline its department's calendar
    cannot give, a value the store refuses), not an outage, a publish that failed, or a
    conflict in the store (a deadlock): one the same try meets again."""
    return not isinstance(error, kafka.PublishFailed) \
        and faults.classify(error) is faults.Fault.RECORD


class Unrecorded(Exception):
    """A notice published whose record failed for a reason of the ticket's own
    (the_tickets_own; the cause): tried again, it would be published again, and fail
    again. `end` records in its place what keeps it from being published again (the
    clocks marked as it marks them; a ticket without clocks, marked escalated)."""

    def __init__(self, end: Callable[[], Awaitable[None]]) -> None:
        super().__init__("a published notice's record failed for the ticket's own reason")
        self.end = end


# The first pause before a published hand-over's record is tried again, doubled each
# time up to the last (record_published).
RECORD_RETRY_FIRST_SECONDS = 0.05
RECORD_RETRY_MOST_SECONDS = 1.0


class Record(Protocol):
    """A published hand-over's record (Routed.record_handover, record_priority_change);
    `again` after an attempt that failed, which may have been committed all the same."""

    def __call__(self, *, again: bool) -> Awaitable[None]: ...


async def record_published(record: Record, *, claim: datetime,
                           ticket_id: str,
                           pause: Callable[[float], Awaitable[None]] = asyncio.sleep,
                           end: Callable[[], Awaitable[None]] | None = None) -> None:
    """The record that ends a published hand-over's (or priority change's) `claim`:
    tried again while the store turns it back for a moment (a conflict with another
    transaction, an outage), for as long as the claim stands (claim_hold leaves it one
    PRODUCE_TIMEOUT_SECONDS after the publish for this). Published and not recorded, the
    ticket would be in its new queue while the store holds it where it was, and a retry
    once the claim ended would publish it a second time. An error may come once the
    record was committed (a connection dropped on COMMIT): a record tried `again` applies
    nothing its first attempt wrote (its steps found in the trace). Past the claim, or
    for any other error, it raises (the caller answers 503, or the check runs again); with
    an `end` (the clock watch's notices), an error of the ticket's own raises Unrecorded
    from it, for the watch to end the notice with."""
    try:
        await _recorded(record, claim=claim, ticket_id=ticket_id, pause=pause)
    except Exception as error:
        if end is None or not the_tickets_own(error):
            raise
        raise Unrecorded(end) from error


async def _recorded(record: Record, *, claim: datetime, ticket_id: str,
                    pause: Callable[[float], Awaitable[None]]) -> None:
    wait, again = RECORD_RETRY_FIRST_SECONDS, False
    while True:
        try:
            await record(again=again)
            return
        except db.STORE_ERRORS as error:
            if not db.is_temporary(error) or \
                    datetime.now(UTC) + timedelta(seconds=wait) >= claim:
                raise
            logger.warning("hand-over published, its record turned back by the store;"
                           " trying again", extra={"ticket_id": ticket_id,
                                                   "retry_in_seconds": wait})
        await pause(wait)
        wait, again = min(wait * 2, RECORD_RETRY_MOST_SECONDS), True
