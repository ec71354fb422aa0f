"""Recording fakes of the router's adapters (services/router/ports.py), for unit tests of
its use cases: wired by the same bootstrap as the real ones
(services/router/bootstrap.py), no sockets."""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import inspect

from services.core import envelope, kafka, lifecycle, targets, tickets
from services.core.settings import Settings
from services.router import (
    bootstrap,
    held_tickets,
    intake_policy,
    missing_lanes,
    service_clocks,
    store,
)
from services.router.models import IntakeKeyRow, RoutedTicketRow
from services.router.store import ClockChange, Dispatch
from tests.conftest import TEST_ROUTING_TABLE

Row = TypeVar("Row", RoutedTicketRow, IntakeKeyRow)


def read(row: Row) -> Row:
    """A row as a read of the store hands it back: a new object, its JSON (payload, trace,
    clocks) copied, so that no write made after the read changes it, nor a change to it
    the store (the real store's reads come from a session that has ended)."""
    columns = inspect(type(row)).column_attrs
    return type(row)(**{column.key: copy.deepcopy(getattr(row, column.key))
                        for column in columns})


@dataclass(frozen=True)
class Published:
    topic: str
    event: envelope.Event
    key: str = ""  # the record's key, as Kafka partitions by it


class FakePublisher:
    """Records what was published; `fail` makes it refuse like an absent broker."""

    def __init__(self) -> None:
        self.published: list[Published] = []
        self.fail = False

    async def publish(self, outputs: Sequence[kafka.Publishable]) -> None:
        if self.fail:
            raise kafka.PublishFailed("no broker in a unit test")
        for output in kafka.records(outputs):
            self.published.append(Published(output.topic, envelope.from_record(
                list(output.headers), output.value), output.key.decode()))

    def types(self) -> list[str]:
        return [found.event.type for found in self.published]


class FakeKeys:
    """`Idempotency-Key`s in a dict, as the store keeps them; each read a copy (`read`)."""

    def __init__(self) -> None:
        self.rows: dict[str, IntakeKeyRow] = {}

    async def claim(self, key: str, *, fingerprint: str, ticket_id: str, now: datetime,
                    correlation_id: str | None = None, event_id: str | None = None,
                    occurred_at: datetime | None = None) -> IntakeKeyRow:
        if key not in self.rows:
            self.rows[key] = IntakeKeyRow(
                idempotency_key=key, ticket_id=ticket_id, fingerprint=fingerprint,
                status=intake_policy.PENDING, created_at=now, correlation_id=correlation_id,
                event_id=event_id, occurred_at=occurred_at)
        return read(self.rows[key])

    async def accepted(self, key: str, *, correlation_id: str) -> None:
        row = self.rows[key]
        row.status, row.correlation_id = intake_policy.ACCEPTED, correlation_id

    async def unpublished(self, key: str) -> None:
        row = self.rows[key]
        if row.status == intake_policy.PENDING:
            row.status = intake_policy.UNPUBLISHED

    async def find(self, key: str) -> IntakeKeyRow | None:
        row = self.rows.get(key)
        return None if row is None else read(row)


@dataclass
class FakeRouted:
    """Routed tickets in a dict; what the use cases recorded on them, in order. Each read
    hands back a copy (`read`), and each write keeps a copy of what it is given, as the
    store does: what the use cases write reaches the stored row through the write
    methods only, and a row read before does not show it."""

    rows: dict[str, RoutedTicketRow] = field(default_factory=dict)
    recorded: list[tuple[str, str]] = field(default_factory=list)  # (what, ticket id)

    def add(self, dispatch: Dispatch) -> RoutedTicketRow:
        """The ticket stored as first dispatched; the stored row itself, for a test to
        set up (what it holds later is read by `get` or from `rows`)."""
        clocks = dispatch.clocks
        row = self.rows[dispatch.ticket_id] = RoutedTicketRow(
            ticket_id=dispatch.ticket_id, department=dispatch.department,
            segment=dispatch.segment, status="routed", priority=dispatch.priority,
            first_response_deadline=dispatch.deadline, first_response_at=None,
            escalated=False, trace=copy.deepcopy(list(dispatch.steps)),
            payload=copy.deepcopy(dispatch.payload),
            updated_at=dispatch.at, customer_id=dispatch.customer_id,
            platform=dispatch.platform, correlation_id=dispatch.correlation_id,
            service_clocks=None if clocks is None else service_clocks.to_json(clocks),
            next_clock_check=None if clocks is None else clocks.next_check())
        return row

    async def get(self, ticket_id: str) -> RoutedTicketRow | None:
        row = self.rows.get(ticket_id)
        return None if row is None else read(row)

    async def claim_handover(self, row: RoutedTicketRow, *,
                             hold: timedelta) -> datetime | None:
        """As the store claims (on the wall clock): the row as read (its clocks' next
        check too), open, unclaimed."""
        now, stored = datetime.now(UTC), self.rows.get(row.ticket_id)
        if stored is None or (stored.department, stored.priority, stored.updated_at,
                              len(stored.trace), stored.next_clock_check) != (
                row.department, row.priority, row.updated_at, len(row.trace),
                row.next_clock_check) \
                or not lifecycle.is_open(stored.status) \
                or intake_policy.handover_claimed(stored.handover_until, now):
            return None
        stored.handover_until = now + hold
        return stored.handover_until

    async def release_handover(self, ticket_id: str, claim: datetime) -> None:
        row = self.rows[ticket_id]
        if row.handover_until == claim:
            row.handover_until = None

    async def record_handover(self, ticket_id: str, *, department: str,
                              steps: Sequence[dict[str, Any]],
                              ticket: tickets.RoutedTicket | None, now: datetime,
                              move_clocks: ClockChange | None = None,
                              claim: datetime | None = None, escalated: bool = False,
                              again: bool = False) -> None:
        row = self.rows[ticket_id]
        if again and steps and all(step in row.trace for step in steps):
            return  # as the store: recorded by the first attempt
        self._move(row, move_clocks)
        row.trace = [*row.trace, *copy.deepcopy(list(steps))]
        row.department, row.updated_at = department, now
        if claim is not None and row.handover_until == claim:
            row.handover_until = None
        if ticket is not None:
            row.payload = ticket.model_dump(mode="json")
        self.recorded.append(("handover", ticket_id))
        if escalated:
            row.escalated = True
            self.recorded.append(("escalated", ticket_id))

    async def record_priority_change(self, ticket_id: str, *, priority: int,
                                     step: dict[str, Any], move_clocks: ClockChange,
                                     claim: datetime | None = None,
                                     again: bool = False) -> None:
        row = self.rows[ticket_id]
        if again and step in row.trace:
            return  # as the store: recorded by the first attempt
        self._move(row, move_clocks)
        if row.payload.get("routing"):  # as the store: a later hand-over's lane
            row.payload = {**row.payload, "routing": {**row.payload["routing"],
                                                      "priority": priority}}
        row.priority, row.trace = priority, [*row.trace, copy.deepcopy(step)]
        if claim is not None and row.handover_until == claim:
            row.handover_until = None
        self.recorded.append(("priority", ticket_id))

    async def update_clocks(self, ticket_id: str, change: ClockChange, *,
                            claim: datetime | None = None,
                            claimed_only: bool = False) -> None:
        row = self.rows[ticket_id]
        if claimed_only and (claim is None or row.handover_until != claim):
            return  # as the store: another took the ticket over since
        self._move(row, change)
        if claim is not None and row.handover_until == claim:
            row.handover_until = None
        self.recorded.append(("clocks", ticket_id))

    async def due_clocks(self, now: datetime, *, limit: int = 200) -> list[RoutedTicketRow]:
        due = sorted((row for row in self.rows.values()  # in the store's order
                      if row.next_clock_check is not None and row.next_clock_check <= now
                      and row.service_clocks is not None),
                     key=lambda row: row.next_clock_check or now)
        return [read(row) for row in due[:limit]]

    async def due_for_escalation(self, now: datetime, *,
                                 limit: int = 200) -> list[RoutedTicketRow]:
        due = sorted((row for row in self.rows.values()  # in the store's order
                      if row.first_response_deadline is not None
                      and targets.past_due(row.first_response_deadline, now)
                      and row.first_response_at is None
                      and not row.escalated and row.service_clocks is None
                      and (row.next_clock_check is None or row.next_clock_check <= now)),
                     key=lambda row: row.first_response_deadline or now)
        return [read(row) for row in due[:limit]]

    async def mark_escalated(self, ticket_id: str, *,
                             claim: datetime | None = None) -> None:
        row = self.rows[ticket_id]
        if claim is not None and row.handover_until == claim:
            row.handover_until = None
        row.escalated = True
        self.recorded.append(("escalated", ticket_id))

    async def postpone_clock_check(self, ticket_id: str, until: datetime, *,
                                   read: datetime | None) -> None:
        row = self.rows[ticket_id]
        if row.next_clock_check == read:
            row.next_clock_check = until
        self.recorded.append(("postponed", ticket_id))

    async def open_tickets(self, departments: Collection[str]) -> dict[str, int]:
        held = Counter(row.department for row in self.rows.values()
                       if row.department in departments and lifecycle.is_open(row.status))
        return dict(held)

    @staticmethod
    def _move(row: RoutedTicketRow, change: ClockChange | None) -> None:
        if change is not None and row.service_clocks is not None:
            store.set_clocks(row, change(service_clocks.from_json(row.service_clocks),
                                         row.department))


class FakeHeld:
    """Tickets held as dead letters, by id (`hold` adds them, as the reader does)."""

    def __init__(self) -> None:
        self.by_id: dict[str, held_tickets.Held] = {}

    def hold(self, *held: held_tickets.Held) -> None:
        self.by_id.update((each.ticket_id, each) for each in held)

    async def get(self, ticket_id: str) -> held_tickets.Held | None:
        return self.by_id.get(ticket_id)


@dataclass(frozen=True)
class Wired:
    router: bootstrap.Router
    routed: FakeRouted
    keys: FakeKeys
    publisher: FakePublisher
    held: FakeHeld


def wired(table: Path = TEST_ROUTING_TABLE,
          lanes: missing_lanes.MissingLanes | None = None) -> Wired:
    """A router over recording fakes and a routing table (the tests'), by its bootstrap;
    `lanes`: those it could not make (none if not given)."""
    routed, keys, publisher, held = FakeRouted(), FakeKeys(), FakePublisher(), FakeHeld()
    router = bootstrap.wire(Settings(routing_table_file=table), routed=routed,
                            intake_keys=keys, publisher=publisher, held=held, lanes=lanes)
    return Wired(router, routed, keys, publisher, held)
