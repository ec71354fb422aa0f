"""The router's SQL state of each routed ticket: where it is, its status, clocks and trace
(the intake's `Idempotency-Key`s are in intake_keys.py)."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, Insert, Table, bindparam, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.core import db, faults, lifecycle, retention, targets, tickets
from services.router import erasures, held_store, intake_policy, service_clocks
from services.router.models import RoutedTicketRow

logger = logging.getLogger(__name__)

# How a report or a hand-over moves a ticket's clocks: given them and the department
# holding the ticket (whose calendar counts), the clocks after.
ClockChange = Callable[[service_clocks.TicketClocks, str], service_clocks.TicketClocks]


@dataclass(frozen=True)
class Dispatch:
    """A ticket's first routing, as the router records it."""

    ticket_id: str
    department: str
    segment: str
    priority: int | None
    deadline: datetime | None
    steps: Sequence[dict[str, Any]]
    payload: dict[str, Any]
    at: datetime
    event_id: str | None = None  # the segmented event that routed it
    customer_id: str | None = None  # whose ticket (found again on erasure)
    platform: str | None = None  # the support platform that posted it
    clocks: service_clocks.TicketClocks | None = None
    correlation_id: str | None = None  # the id it came with (None: its ticket id)
    received_at: datetime | None = None  # when the intake received it (None: taken as `at`)


@dataclass(frozen=True)
class Reported:
    """A report as recorded: the ticket's segment, its clocks after it, and who held it
    at the report's time (what its `deadlines_changed` says)."""

    segment: str
    clocks: service_clocks.TicketClocks | None
    held_by: str  # the department that held it at the report's time


@dataclass(frozen=True)
class Stored:
    """A routed ticket as the store keeps it: what a replay of its routing publishes
    again."""

    department: str
    priority: int | None
    status: str  # lifecycle.Status: a closed ticket joins no queue again
    payload: dict[str, Any]  # the routed ticket (as handed over or reprioritised since)
    correlation_id: str | None
    deadlines: dict[str, datetime | None]  # its clocks' deadlines now
    first_routing: dict[str, Any] | None  # its trace's routing step: as first decided
    handed_on: bool  # a transfer or escalation since put it in another queue
    claimed_until: datetime | None  # a hand-over being published holds it until then


@dataclass(frozen=True)
class RoutedBefore:
    """A ticket routed before, as a batch's lookup finds it: the event that routed it,
    and the ticket as stored (None: routed while the store was down, not written yet)."""

    event_id: str | None
    stored: Stored | None = None


# The statements the router stage runs on every batch, built once rather than per batch:
# building them cost more of a small batch's CPU than running them.
_ROUTED_BEFORE = (select(RoutedTicketRow.ticket_id, RoutedTicketRow.routed_event_id,
                         RoutedTicketRow.department, RoutedTicketRow.priority,
                         RoutedTicketRow.status, RoutedTicketRow.payload,
                         RoutedTicketRow.correlation_id, RoutedTicketRow.service_clocks,
                         RoutedTicketRow.trace, RoutedTicketRow.handover_until)
                  .where(RoutedTicketRow.ticket_id.in_(bindparam("ticket_ids",
                                                                 expanding=True))))


# The routed tickets' table, for Core statements (not the mapped class: no ORM bulk path).
_ROUTED = cast(Table, RoutedTicketRow.__table__)


@functools.cache
def _first_dispatches(dialect: str) -> Insert:
    """Insert a batch's first routings. A ticket stored already stays as it is: a replay
    of its routing publishes the stored ticket again and writes nothing (a state kept
    through a store outage meets the one written before it, if any)."""
    return db.insert_on_conflict(dialect)(_ROUTED).on_conflict_do_nothing(
        index_elements=[_ROUTED.c.ticket_id])


# What a routing decides of a stored row, besides its clocks and deadline
# (record_kept_dispatches).
_ROUTING_FIELDS = ("department", "segment", "priority", "payload", "updated_at",
                   "customer_id", "platform", "correlation_id")


def _merge_kept(row: RoutedTicketRow, dispatch: Dispatch) -> None:
    """A stored row meets the routing published while the store could not be read."""
    values = _row_values(dispatch)
    if row.routed_event_id != dispatch.event_id:
        logger.warning("a copy of a stored ticket was routed while the store was down",
                       extra={"ticket_id": dispatch.ticket_id})
        return
    if row.trace[:len(dispatch.steps)] == values["trace"]:
        return  # as written just now, or by a writer before (with what followed since)
    routed_at = intake_policy.routed_at(row.trace)
    if routed_at is not None and dispatch.at < routed_at:
        return  # an older attempt's, written late: the newer routing stands
    later = [dict(step) for step in intake_policy.after_routing(row.trace)]
    if later and (dispatch.department, dispatch.priority) != (row.department, row.priority):
        # Its clocks and what was reported or handed over were of the stored routing.
        logger.warning("a ticket routed elsewhere while the store was down, and acted on"
                       " since, keeps its stored state", extra={"ticket_id": row.ticket_id})
        return
    for name in _ROUTING_FIELDS:
        if name != "updated_at" or not later:  # else the last change is a later step's
            setattr(row, name, values[name])
    row.trace = [*dispatch.steps, *later]
    if not later:  # nothing since: the new routing's clocks and deadline
        row.first_response_deadline = values["first_response_deadline"]
        row.service_clocks = values["service_clocks"]
        row.next_clock_check = values["next_clock_check"]


def _as_dict(step: Mapping[str, Any] | None) -> dict[str, Any] | None:
    return None if step is None else dict(step)


def _row_values(d: Dispatch) -> dict[str, Any]:
    return {"ticket_id": d.ticket_id, "department": d.department, "segment": d.segment,
            "status": lifecycle.Status.ROUTED, "priority": d.priority,
            "first_response_deadline": d.deadline, "escalated": False,
            "trace": list(d.steps), "payload": d.payload, "updated_at": d.at,
            "routed_event_id": d.event_id, "customer_id": d.customer_id,
            "platform": d.platform, "correlation_id": d.correlation_id,
            "service_clocks": None if d.clocks is None else service_clocks.to_json(d.clocks),
            "next_clock_check": None if d.clocks is None else d.clocks.next_check()}


async def _not_forgotten(session: AsyncSession,
                         dispatches: Sequence[Dispatch]) -> list[Dispatch]:
    """The dispatches to write: not those of tickets their customer's erasure forgot
    (received before it, routed after; erasures.py). One query a batch."""
    erased = await erasures.erased_at(
        session, {d.customer_id for d in dispatches if d.customer_id is not None})
    if not erased:
        return list(dispatches)
    kept = [d for d in dispatches if d.customer_id is None or not erasures.forgotten(
        d.received_at or d.at, erased.get(d.customer_id))]
    if len(kept) < len(dispatches):
        logger.info("tickets of erased customers routed, not kept",
                    extra={"tickets": len(dispatches) - len(kept)})
    return kept


class KeptNotWritten(Exception):
    """Some routings kept through an outage were not written, for another reason than an
    outage (a bug; the cause): `unwritten`, their tickets; the others were."""

    def __init__(self, unwritten: frozenset[str]) -> None:
        super().__init__(f"{len(unwritten)} kept ticket states not written")
        self.unwritten = unwritten


def _recorded_already(row: RoutedTicketRow, steps: Sequence[dict[str, Any]]) -> bool:
    """Whether a record tried again finds its first attempt committed after all: its
    steps (each dated to the microsecond) are in the trace. It then applies nothing a
    second time; not found, it applies, as a first attempt would (even should another
    hand-over have claimed the ticket since: its publish went out)."""
    return bool(steps) and all(step in row.trace for step in steps)


def _end_claim(row: RoutedTicketRow, claim: datetime | None) -> None:
    """A hand-over's or priority change's claim (claim_handover) ends with its record,
    unless another took the ticket over since (this one having expired)."""
    if claim is not None and row.handover_until == claim:
        row.handover_until = None


class StateNotWrittenYet(faults.Transient):
    """Reports on tickets whose state waits for the store: retried, not dropped."""


@dataclass(frozen=True)
class Report:
    """A department's or the platform's report, as the event follower records it
    (`RoutedTickets.record_report`)."""

    ticket_id: str
    event_type: str
    at: datetime
    move_clocks: ClockChange | None = None
    event_id: str | None = None


class RoutedTickets:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def record_first_dispatches(self, dispatches: Sequence[Dispatch]) -> None:
        """Record a batch of first routings in one statement; a ticket stored already
        keeps its state (its routing replayed, it is published as stored). A ticket its
        customer's erasure forgot is not recorded."""
        # In ticket order, as record_kept_dispatches locks them: writers at once do not
        # deadlock.
        latest = [d for _, d in sorted({d.ticket_id: d for d in dispatches}.items())]
        if not latest:
            return
        async with self._sessions() as session, session.begin():
            # Routed, so held no longer: kept or, its customer erased, not.
            await held_store.forget(session, [d.ticket_id for d in latest])
            rows = [_row_values(d) for d in await _not_forgotten(session, latest)]
            if rows:
                await session.execute(_first_dispatches(session.get_bind().dialect.name),
                                      rows)

    async def purge(self, before: datetime, *, chunk: int) -> int:
        """Delete ticket states and traces unchanged since `before` (retention), and
        forget that those tickets were held, in the same transaction: a ticket's dead
        letter read as a replay routed it may have held it all the same (its routing
        found no held row to forget), and without its state it would be told held again
        (held_store.HeldTickets.hold)."""
        return await retention.delete_in_chunks(
            self._sessions, RoutedTicketRow.ticket_id, RoutedTicketRow.updated_at < before,
            chunk=chunk, along=held_store.forget)

    async def routed_before(self, ticket_ids: Collection[str]) -> dict[str, RoutedBefore]:
        """For the tickets already routed: the event that routed each, and the ticket as
        stored (new tickets, the most of a batch, have no row to read)."""
        if not ticket_ids:
            return {}
        async with self._sessions() as session:
            rows = await session.execute(_ROUTED_BEFORE, {"ticket_ids": list(ticket_ids)})
            return {row.ticket_id: RoutedBefore(row.routed_event_id, Stored(
                department=row.department, priority=row.priority, status=row.status,
                payload=row.payload, correlation_id=row.correlation_id,
                deadlines={} if row.service_clocks is None else dict(
                    service_clocks.from_json(row.service_clocks).deadlines()),
                first_routing=_as_dict(intake_policy.routing_step(row.trace)),
                handed_on=intake_policy.handed_on(intake_policy.after_routing(row.trace)),
                claimed_until=row.handover_until)) for row in rows}

    async def record_kept_dispatches(self, dispatches: Sequence[Dispatch], *,
                                     chunk: int = 500) -> None:
        """Routings decided while the store could not be read (their records published):
        each as published, `chunk` tickets a transaction. A ticket stored meanwhile by the
        same event (its first attempt written before the store went down, its records
        not committed) takes the routing published, unless its trace has gained steps
        since: then what was reported or handed over stands (with its clocks and
        deadline), and only a ticket reported on alone takes the department and copy
        published. One stored by another event (a copy routed while the store could not
        tell) stays. One its customer's erasure forgot is not written. Several writers
        at once (the shares, the flush) meet no conflict: rows are inserted if absent,
        then locked in ticket order. A chunk failing for anything but an outage or a
        conflict holds back none of the others: KeptNotWritten names its tickets once the
        others are written (an outage or a conflict is raised at once, to be retried)."""
        latest = sorted({d.ticket_id: d for d in dispatches}.values(),
                        key=lambda d: d.ticket_id)
        failed: Exception | None = None
        unwritten: set[str] = set()
        for start in range(0, len(latest), chunk):
            part = latest[start:start + chunk]
            try:
                await self._record_kept(part)
            except Exception as error:
                if db.is_temporary(error):  # the batch is retried
                    if failed is not None:  # not to be lost behind the outage
                        logger.error("kept ticket states not written", exc_info=failed)
                    raise
                failed = failed or error
                unwritten.update(d.ticket_id for d in part)
        if failed is not None:
            raise KeptNotWritten(frozenset(unwritten)) from failed

    async def _record_kept(self, dispatches: Sequence[Dispatch]) -> None:
        async with self._sessions() as session, session.begin():
            # Routed, so held no longer: kept or, its customer erased, not.
            await held_store.forget(session, [d.ticket_id for d in dispatches])
            kept = await _not_forgotten(session, dispatches)
            if not kept:
                return
            by_id = {d.ticket_id: d for d in kept}
            await session.execute(_first_dispatches(session.get_bind().dialect.name),
                                  [_row_values(d) for d in kept])
            rows = await session.scalars(
                select(RoutedTicketRow).where(RoutedTicketRow.ticket_id.in_(list(by_id)))
                .order_by(RoutedTicketRow.ticket_id).with_for_update())
            for row in rows:
                _merge_kept(row, by_id[row.ticket_id])

    async def platforms_of(self, ticket_ids: Collection[str]) -> dict[str, str]:
        """The platform that posted each of these routed tickets (where known)."""
        if not ticket_ids:
            return {}
        async with self._sessions() as session:
            rows = await session.execute(
                select(RoutedTicketRow.ticket_id, RoutedTicketRow.platform)
                .where(RoutedTicketRow.ticket_id.in_(list(ticket_ids)),
                       RoutedTicketRow.platform.is_not(None)))
            return {ticket_id: platform for ticket_id, platform in rows if platform}

    async def claim_handover(self, row: RoutedTicketRow, *,
                             hold: timedelta) -> datetime | None:
        """Claim the ticket for a hand-over (a transfer, an escalation) or a priority
        change, or the notices its clocks owe, for `hold` from now: only if it is as
        `row` read it (its department, priority, last change, the steps of its trace and
        its clocks' next check: nothing reported, handed over, re-prioritised, routed or
        warned since, not even a priority changed and changed back), open, and no other
        claim stands. The claim (its end, returned; None: not
        claimed) is the claimant's token: it publishes, then records the hand-over or
        the priority change, which ends the claim, or releases it. So two hand-overs at
        once do not put it in two queues, none acts on a ticket answered since it was
        read, none publishes a lane or deadlines of a priority changed meanwhile, and no
        notice is published twice (each one sent marks its clock, which moves the next
        check on past it, as a failed notice's postponement does)."""
        now = datetime.now(UTC)  # at the claim, not at the start of a long check
        until = now + hold
        async with self._sessions() as session, session.begin():
            claimed = await session.execute(
                update(RoutedTicketRow)
                .where(RoutedTicketRow.ticket_id == row.ticket_id,
                       RoutedTicketRow.department == row.department,
                       RoutedTicketRow.priority.is_not_distinct_from(row.priority),
                       RoutedTicketRow.updated_at == row.updated_at,
                       # A priority change keeps the last change (the backlog's age)
                       # but adds a step to the trace.
                       func.json_array_length(RoutedTicketRow.trace) == len(row.trace),
                       RoutedTicketRow.next_clock_check.is_not_distinct_from(
                           row.next_clock_check),
                       RoutedTicketRow.status.in_(lifecycle.OPEN),
                       # Not intake_policy.handover_claimed, in SQL:
                       or_(RoutedTicketRow.handover_until.is_(None),
                           RoutedTicketRow.handover_until <= now))
                .values(handover_until=until))
            return until if cast(CursorResult[Any], claimed).rowcount == 1 else None

    async def release_handover(self, ticket_id: str, claim: datetime) -> None:
        """A claimed hand-over that was not published: the ticket stays where it is (a
        claim another took over since, this one having expired, stays)."""
        async with self._sessions() as session, session.begin():
            await session.execute(update(RoutedTicketRow)
                                  .where(RoutedTicketRow.ticket_id == ticket_id,
                                         RoutedTicketRow.handover_until == claim)
                                  .values(handover_until=None))

    async def record_handover(self, ticket_id: str, *, department: str,
                              steps: Sequence[dict[str, Any]],
                              ticket: tickets.RoutedTicket | None, now: datetime,
                              move_clocks: ClockChange | None = None,
                              claim: datetime | None = None, escalated: bool = False,
                              again: bool = False) -> None:
        """An escalation or transfer: the ticket is with `department` now, as `ticket`
        (its copy; the priority the row has now kept); its trace grows and its clocks are
        rebased by `move_clocks` (given the department it leaves); `escalated`: marked
        escalated (mark_escalated) in the same transaction. Its `claim` (claim_handover)
        ends, unless another took over since. `again`: a record tried again after an
        error that may have come once it was committed: applied unless its steps are in
        the trace already (_recorded_already)."""
        async with self._sessions() as session, session.begin():
            row = (await _held(session, [ticket_id])).get(ticket_id)
            if row is not None and not (again and _recorded_already(row, steps)):
                _end_claim(row, claim)
                row.escalated = row.escalated or escalated
                if move_clocks is not None and row.service_clocks is not None:
                    set_clocks(row, move_clocks(
                        service_clocks.from_json(row.service_clocks), row.department))
                row.trace = [*row.trace, *steps]
                row.department, row.updated_at = department, now
                if ticket is not None:  # None: the copy stays as it is
                    row.payload = ticket.model_dump(mode="json")
                    if row.priority is not None:
                        # A priority changed since the hand-over read the ticket stands:
                        # a later hand-over joins its lane (record_priority_change).
                        routing = {**row.payload["routing"], "priority": row.priority}
                        row.payload = {**row.payload, "routing": routing}

    async def record_priority_change(self, ticket_id: str, *, priority: int,
                                     step: dict[str, Any], move_clocks: ClockChange,
                                     claim: datetime | None = None,
                                     again: bool = False) -> None:
        """A new priority: on the row and its ticket copy (a later hand-over joins the
        new priority's lane); the trace grows and the clocks are rebased. The ticket has
        not waited any less: `updated_at` (the backlog's age) stays. Its `claim`
        (claim_handover) ends, unless another took over since. `again`: as for
        record_handover."""
        async with self._sessions() as session, session.begin():
            row = (await _held(session, [ticket_id])).get(ticket_id)
            if row is None or (again and _recorded_already(row, [step])):
                return
            _end_claim(row, claim)
            if row.service_clocks is not None:
                set_clocks(row, move_clocks(service_clocks.from_json(row.service_clocks),
                                             row.department))
            if row.payload.get("routing"):  # the copy of the routed ticket
                routing = {**row.payload["routing"], "priority": priority}
                row.payload = {**row.payload, "routing": routing}
            row.priority, row.trace = priority, [*row.trace, step]

    async def update_clocks(self, ticket_id: str, change: ClockChange, *,
                            claim: datetime | None = None, claimed_only: bool = False
                            ) -> None:
        """Clocks changed by the clock watch (warnings sent). Its `claim`
        (claim_handover, taken to publish them) ends, unless another took over since.
        `claimed_only`: changed only while the `claim` is the ticket's (no other took it
        over since, this one having expired): an escalation's end (clock_watch._ended)
        marks the clocks of the department it was published for, not those of one a
        hand-over meanwhile moved the ticket to."""
        async with self._sessions() as session, session.begin():
            row = (await _held(session, [ticket_id])).get(ticket_id)
            if row is None or (claimed_only and (claim is None
                                                 or row.handover_until != claim)):
                return
            _end_claim(row, claim)
            if row.service_clocks is not None:
                set_clocks(row, change(service_clocks.from_json(row.service_clocks),
                                        row.department))

    async def due_clocks(self, now: datetime, *, limit: int = 200) -> list[RoutedTicketRow]:
        """Tickets whose clocks call for a warning or an escalation by `now`."""
        async with self._sessions() as session:
            return list((await session.scalars(
                select(RoutedTicketRow)
                .where(RoutedTicketRow.next_clock_check <= now,
                       # Without clocks: a failed escalation's next check (due_for_escalation).
                       RoutedTicketRow.service_clocks.is_not(None))
                .order_by(RoutedTicketRow.next_clock_check).limit(limit))).all())

    async def get(self, ticket_id: str) -> RoutedTicketRow | None:
        async with self._sessions() as session:
            return await session.get(RoutedTicketRow, ticket_id)

    async def record_report(self, ticket_id: str, event_type: str, at: datetime, *,
                            move_clocks: ClockChange | None = None,
                            event_id: str | None = None) -> Reported | None:
        """A department's or the platform's report: the status moves as lifecycle.py
        says, the clocks as `move_clocks` does; None for a ticket the router has not
        routed (yet) or an event that is no report. `event_id`, the report's event, is
        kept in its trace step: that event followed again (a batch replayed after its
        writes, or one report published twice under its id) moves nothing, and gets the
        clocks as they stand, so that it publishes the same deadlines_changed again.
        What happened at `at` (a first response, a clock's outcome) is credited to the
        department that held the ticket then (`Reported.held_by`), as the metrics
        credit it: the follower may read a report after a hand-over."""
        [reported] = await self.record_reports(
            [Report(ticket_id, event_type, at, move_clocks=move_clocks, event_id=event_id)])
        return reported

    async def record_reports(self, reports: Sequence[Report], *,
                             awaited: Collection[str] = ()) -> list[Reported | None]:
        """Reports, in the order they were published, each recorded as `record_report`
        records it, all in one transaction (the event follower's batch), their tickets'
        rows held to its end (`_held`). `awaited`: tickets whose state the router keeps
        in memory until the store takes it; if one is not stored, none of the reports is
        recorded (StateNotWrittenYet: retried), so that none is followed again after."""
        wanted = sorted({report.ticket_id for report in reports
                         if lifecycle.reported_status(report.event_type) is not None})
        if not wanted:
            return [None] * len(reports)
        async with self._sessions() as session, session.begin():
            rows = await _held(session, wanted)
            waiting = sorted(set(awaited) & set(wanted) - rows.keys())
            if waiting:
                raise StateNotWrittenYet(", ".join(waiting))
            now = datetime.now(UTC)
            return [_reported(rows.get(report.ticket_id), report, now) for report in reports]

    async def due_for_escalation(self, now: datetime, *, limit: int = 200
                                 ) -> list[RoutedTicketRow]:
        async with self._sessions() as session:
            return list((await session.scalars(
                select(RoutedTicketRow)
                .where(targets.past_due_where(RoutedTicketRow.first_response_deadline, now),
                       RoutedTicketRow.first_response_at.is_(None),
                       RoutedTicketRow.escalated.is_(False),
                       # Tickets with clocks are watched by their clocks.
                       RoutedTicketRow.service_clocks.is_(None),
                       # Not one whose escalation failed, before it is checked again.
                       or_(RoutedTicketRow.next_clock_check.is_(None),
                           RoutedTicketRow.next_clock_check <= now))
                .order_by(RoutedTicketRow.first_response_deadline).limit(limit))).all())

    async def mark_escalated(self, ticket_id: str, *, claim: datetime | None = None) -> None:
        """The ticket without clocks escalated: its escalation is not owed again. Its
        `claim` (an escalation's, whose record the store refused: clock_watch._ended)
        ends, unless another took over since, as the record would have ended it."""
        async with self._sessions() as session, session.begin():
            row = await session.get(RoutedTicketRow, ticket_id, with_for_update=True)
            if row is not None:
                _end_claim(row, claim)
                row.escalated = True

    async def postpone_clock_check(self, ticket_id: str, until: datetime, *,
                                   read: datetime | None) -> None:
        """The ticket's clocks are checked again at `until`, not before (its notice
        failed: clock_watch.checked_again_later; a ticket without clocks, its escalation,
        `read` None the first time), if their next check is still the one `read`: a
        report moving the clocks since set a check of its own."""
        async with self._sessions() as session, session.begin():
            await session.execute(update(RoutedTicketRow).where(
                RoutedTicketRow.ticket_id == ticket_id,
                RoutedTicketRow.next_clock_check.is_not_distinct_from(read))
                .values(next_clock_check=until))

    async def backlog(self) -> dict[str, int]:
        """Each department's backlog: its tickets awaiting a first response."""
        async with self._sessions() as session:
            return {department: count for department, count in (await session.execute(
                select(RoutedTicketRow.department, func.count())
                .where(*_AWAITING_FIRST_RESPONSE)
                .group_by(RoutedTicketRow.department))).all()}

    async def open_tickets(self, departments: Collection[str]) -> dict[str, int]:
        """How many open tickets (lifecycle.OPEN: not resolved) each of `departments`
        holds; a department holding none is not named."""
        if not departments:
            return {}
        async with self._sessions() as session:
            return {department: count for department, count in (await session.execute(
                select(RoutedTicketRow.department, func.count())
                .where(RoutedTicketRow.department.in_(sorted(departments)),
                       RoutedTicketRow.status.in_(lifecycle.OPEN))
                .group_by(RoutedTicketRow.department))).all()}

    async def first_responses_since(self, since: datetime) -> dict[str, int]:
        """First responses reported at or after `since`, per department: the one that
        held the ticket when it was answered, as the metrics service credits it."""
        credited = func.coalesce(RoutedTicketRow.first_response_department,
                                 RoutedTicketRow.department)
        async with self._sessions() as session:
            return {department: count for department, count in (await session.execute(
                select(credited, func.count())
                .where(RoutedTicketRow.first_response_at >= since)
                .group_by(credited))).all()}

    async def oldest_open(self) -> dict[str, datetime]:
        """Per department, since when its longest-waiting backlog ticket has waited
        (routed, handed over, picked up or replied to by the customer, whichever was
        last)."""
        async with self._sessions() as session:
            rows = (await session.execute(
                select(RoutedTicketRow.department, func.min(RoutedTicketRow.updated_at))
                .where(*_AWAITING_FIRST_RESPONSE)
                .group_by(RoutedTicketRow.department))).all()
        return {department: oldest for department, oldest in rows if oldest is not None}


# A department's backlog (lifecycle.py), as a routed ticket's row tells its facts.
_AWAITING_FIRST_RESPONSE = lifecycle.backlog_where(
    open_ticket=RoutedTicketRow.status.in_(lifecycle.OPEN),
    answered=RoutedTicketRow.first_response_at.is_not(None),
    waiting_on_customer=RoutedTicketRow.status == lifecycle.Status.WAITING_ON_CUSTOMER)


def set_clocks(row: RoutedTicketRow, clocks: service_clocks.TicketClocks) -> None:
    """The row's clocks, and what is read from them: the next check, and the first
    response's deadline while its clock runs."""
    row.service_clocks = service_clocks.to_json(clocks)
    row.next_clock_check = clocks.next_check()
    first = clocks.current("first_response")
    if first is not None and first.deadline is not None:
        row.first_response_deadline = first.deadline  # shown and watched as before


async def _held(session: AsyncSession, ticket_ids: Sequence[str]
                ) -> dict[str, RoutedTicketRow]:
    """The tickets' rows (those stored), held until the transaction ends, so that no
    other writer's change to them commits between this read and this transaction's
    writes (which would be lost under them: the reports, hand-overs, priority changes
    and clock checks write what they read, changed): PostgreSQL's row locks, taken in
    ticket order as the other writers of several rows take them; SQLite's write lock,
    taken before the rows are read (db.hold_store)."""
    await db.hold_store(session, RoutedTicketRow.segment, _TICKETS,
                        {"ticket_ids": list(ticket_ids)})
    return {row.ticket_id: row for row in await session.scalars(
        select(RoutedTicketRow).where(RoutedTicketRow.ticket_id.in_(ticket_ids))
        .order_by(RoutedTicketRow.ticket_id).with_for_update())}


# The rows `_held` writes unchanged on SQLite. The column it writes, segment, is in no
# index: the write changes no index entry either.
_TICKETS = RoutedTicketRow.ticket_id.in_(bindparam("ticket_ids", expanding=True))


def _reported(row: RoutedTicketRow | None, report: Report, now: datetime
              ) -> Reported | None:
    """`report` recorded on its ticket's row, as `RoutedTickets.record_report` says (None:
    a ticket not routed, or an event that is no report)."""
    status = lifecycle.reported_status(report.event_type)
    if status is None or row is None:
        return None
    held_by = intake_policy.held_at(row.trace, report.at) or row.department
    if report.event_id is not None and intake_policy.followed_already(row.trace,
                                                                      report.event_id):
        return Reported(row.segment, None if row.service_clocks is None
                        else service_clocks.from_json(row.service_clocks), held_by)
    if not lifecycle.is_open(row.status):
        # A report accepted just before the resolution was recorded: it moves nothing,
        # and has no clocks to publish (no deadlines_changed after the resolution).
        return Reported(row.segment, None, held_by)
    row.status = lifecycle.status_after(row.status, status)
    if lifecycle.counts_as_first_response(report.event_type):
        first = row.first_response_at
        if first is None or report.at < first:
            row.first_response_at, row.first_response_department = report.at, held_by
    step: dict[str, Any] = {"at": report.at.isoformat(), "step": status}
    if report.event_id is not None:
        step["event"] = report.event_id
    clocks = None
    if report.move_clocks is not None and row.service_clocks is not None:
        clocks = report.move_clocks(service_clocks.from_json(row.service_clocks),
                                    row.department)
        set_clocks(row, clocks)
        step |= {"clocks": "paused" if clocks.paused else "running",
                 "deadlines": {target: None if deadline is None else deadline.isoformat()
                               for target, deadline in clocks.deadlines().items()}}
    row.trace = intake_policy.with_report(row.trace, step)
    row.updated_at = now  # what a hand-over's claim sees changed (past the ceiling too)
    return Reported(row.segment, clocks, held_by)
