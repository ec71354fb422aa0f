"""The event follower records a batch's reports in one transaction
(`RoutedTickets.record_reports`), on a real SQL store (SQLite and PostgreSQL): each
report comes out as it does recorded alone, in order, several on one ticket included,
with a report followed again moving nothing, and the ticket the reports move is left
the same."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiokafka import ConsumerRecord

from services.core import batches, db, envelope, events, migrate, topics
from services.core.events import TicketEventType
from services.router import service_clocks
from services.router.event_follower import FollowTicketEvent
from services.router.store import (
    ClockChange,
    Dispatch,
    Report,
    Reported,
    RoutedTickets,
    StateNotWrittenYet,
)

NOW = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)
TARGETS = service_clocks.Targets(timedelta(hours=1), next_response=timedelta(hours=2))


def move(kind: TicketEventType, at: datetime) -> ClockChange:
    def moved(clocks: service_clocks.TicketClocks, _department: str
              ) -> service_clocks.TicketClocks:
        return service_clocks.reported(clocks, kind, at, None)
    return moved


def reports(prefix: str) -> list[Report]:
    """Reports on two routed tickets and one unknown, in the order published: the
    second ticket's clocks paused then resumed, the first's answered twice (the same
    event followed again among them), and an event that is no report."""
    one, two = f"{prefix}-1", f"{prefix}-2"
    at = [NOW + timedelta(minutes=minutes) for minutes in range(10)]
    kinds = [(one, TicketEventType.PICKED_UP, at[1], "e-1"),
             (two, TicketEventType.WAITING_ON_CUSTOMER, at[2], "e-2"),
             (one, TicketEventType.RESPONDED, at[3], "e-3"),
             (f"{prefix}-unknown", TicketEventType.RESPONDED, at[4], "e-4"),
             (two, TicketEventType.CUSTOMER_REPLIED, at[5], "e-5"),
             (one, TicketEventType.RESPONDED, at[3], "e-3"),  # followed again
             (one, TicketEventType.ROUTED, at[6], "e-6"),  # no report
             (two, TicketEventType.RESPONDED, at[7], "e-7"),
             (one, TicketEventType.RESOLVED, at[8], "e-8")]
    return [Report(ticket_id, kind, when, move_clocks=move(kind, when),
                   event_id=f"{prefix}-{event_id}")
            for ticket_id, kind, when, event_id in kinds]


async def route(routed: RoutedTickets, *ticket_ids: str) -> None:
    await routed.record_first_dispatches([Dispatch(
        ticket_id=ticket_id, department="care", segment="standard", priority=3,
        deadline=NOW + timedelta(hours=1), steps=[], payload={}, at=NOW,
        clocks=service_clocks.routed(TARGETS, NOW, None)) for ticket_id in ticket_ids])


def outcome(reported: Reported | None) -> Any:
    if reported is None:
        return None
    return (reported.segment, reported.held_by, None if reported.clocks is None else (
        reported.clocks.paused, reported.clocks.deadlines()))


async def state(routed: RoutedTickets, ticket_id: str) -> Any:
    row = await routed.get(ticket_id)
    assert row is not None
    steps = [{key: value for key, value in step.items() if key != "event"}
             for step in row.trace]
    return (row.status, row.first_response_at, row.first_response_deadline,
            row.service_clocks, steps)


async def test_a_batch_of_reports_is_recorded_as_each_alone(routed: RoutedTickets) -> None:
    await route(routed, "a-1", "a-2", "b-1", "b-2")
    together = await routed.record_reports(reports("a"))
    alone = [await routed.record_report(r.ticket_id, r.event_type, r.at,
                                        move_clocks=r.move_clocks, event_id=r.event_id)
             for r in reports("b")]
    assert [outcome(r) for r in together] == [outcome(r) for r in alone]
    assert [r is None for r in together] == [False, False, False, True, False, False,
                                             True, False, False]
    for suffix in ("1", "2"):
        assert await state(routed, f"a-{suffix}") == await state(routed, f"b-{suffix}")
    status, first_response_at, _, _, steps = await state(routed, "a-1")
    assert status == "resolved"
    assert first_response_at == NOW + timedelta(minutes=3)
    assert [step["step"] for step in steps] == ["picked_up", "responded", "resolved"]


async def test_a_batch_followed_again_moves_nothing(routed: RoutedTickets) -> None:
    await route(routed, "a-1", "a-2")
    first = await routed.record_reports(reports("a"))
    before = [await state(routed, "a-1"), await state(routed, "a-2")]
    again = await routed.record_reports(reports("a"))
    assert [await state(routed, "a-1"), await state(routed, "a-2")] == before
    # Each report followed again gets the clocks as they stand: the last one's, for
    # the ticket's last report.
    assert outcome(again[-1]) == outcome(first[-1])


async def test_a_batch_with_a_ticket_awaited_and_not_stored_records_nothing(
        routed: RoutedTickets) -> None:
    """The router keeps a ticket's state in memory while the store is out: a report on
    it before it is written has the batch retried, and none of its reports is recorded
    meanwhile (so that none is followed again, as replays, on the retry)."""
    await route(routed, "a-1")
    before = await state(routed, "a-1")
    batch = [*reports("a")[:1], Report("a-deferred", TicketEventType.RESPONDED, NOW)]
    with pytest.raises(StateNotWrittenYet):
        await routed.record_reports(batch, awaited={"a-deferred"})
    assert await state(routed, "a-1") == before
    recorded = await routed.record_reports(batch, awaited=set())  # not awaited: unknown
    assert [r is None for r in recorded] == [False, True]


def consumed(event: envelope.Event, offset: int) -> ConsumerRecord[bytes, bytes]:
    record = envelope.encode(topics.EVENTS, event.ticket_id or "", event)
    return ConsumerRecord(
        topic=record.topic, partition=0, offset=offset, timestamp=0, timestamp_type=0,
        key=record.key, value=record.value, checksum=None,
        serialized_key_size=len(record.key), serialized_value_size=len(record.value),
        headers=list(record.headers))


def published(sent: list[envelope.Record]) -> list[Any]:
    """What the deadlines_changed events say (not their ids, which are the reports')."""
    said = []
    for record in sent:
        event = events.read(envelope.from_record(record.headers, record.value))
        said.append((event.type, event.paused, event.deadlines, event.outcomes))
    return said


async def test_the_follower_publishes_for_each_report_of_a_batch_what_it_does_alone(
        routed: RoutedTickets) -> None:
    """The clocks paused, resumed and paused again, and the resumption published twice
    (a platform's retry, same event id): each report's deadlines_changed says the clocks
    after that report, the same as when each comes in a batch of its own."""
    await route(routed, "a-1", "b-1")

    def batch(ticket_id: str) -> list[ConsumerRecord[bytes, bytes]]:
        kinds = [TicketEventType.WAITING_ON_CUSTOMER, TicketEventType.CUSTOMER_REPLIED,
                 TicketEventType.WAITING_ON_CUSTOMER]
        sent = [events.as_envelope(events.TicketEvent(
            ticket_id=ticket_id, type=kind, department="care",
            occurred_at=NOW + timedelta(minutes=10 * (n + 1))), "c",
            events.WRITTEN_BY[kind], event_id=f"{ticket_id}-e{n}")
            for n, kind in enumerate(kinds)]
        return [consumed(event, n) for n, event in enumerate([*sent, sent[1]])]

    follower = FollowTicketEvent(routed)
    together = await batches.Batches(follower, stage="tracker").outgoing(batch("a-1"))
    alone = [record for one in batch("b-1")
             for record in await batches.Batches(follower, stage="tracker").outgoing([one])]
    assert published(together) == published(alone)
    assert [paused for _, paused, _, _ in published(together)] == [True, False, True, True]


WRITERS = ["reports", "hand-over", "priority change", "clock check"]


@pytest.mark.parametrize("writer", WRITERS)
async def test_sqlite_the_rows_are_held_from_before_they_are_read(
        tmp_path: Path, writer: str) -> None:
    """On SQLite, whose transactions take the write lock at their first write, no other
    writer commits between a writer's read of a ticket and its writes, which are what it
    read, changed (a pause reported, lost under a clock check's stale clocks; a
    hand-over's trace step, under a report's)."""
    path = tmp_path / "store.db"
    url = f"sqlite+aiosqlite:///{path}"
    await migrate.upgrade(url)
    engine = db.engine(url)
    try:
        routed = RoutedTickets(db.sessions(engine))
        await route(routed, "t-1")
        refused: list[str] = []

        def another_writer(clocks: service_clocks.TicketClocks, _department: str
                           ) -> service_clocks.TicketClocks:
            other = sqlite3.connect(path, timeout=0)
            try:
                other.execute("UPDATE routed_tickets SET priority = 1"
                              " WHERE ticket_id = 't-1'")
                other.commit()
            except sqlite3.OperationalError as error:
                refused.append(str(error))
            finally:
                other.close()
            return clocks

        if writer == "reports":
            await routed.record_reports([Report("t-1", TicketEventType.PICKED_UP, NOW,
                                                move_clocks=another_writer)])
        elif writer == "hand-over":
            await routed.record_handover("t-1", department="billing", steps=[],
                                         ticket=None, now=NOW, move_clocks=another_writer)
        elif writer == "priority change":
            await routed.record_priority_change("t-1", priority=2, step={},
                                                move_clocks=another_writer)
        else:
            await routed.update_clocks("t-1", another_writer)
        assert refused == ["database is locked"]
    finally:
        await engine.dispose()
