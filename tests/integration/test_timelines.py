"""Ticket timelines in a real SQLite store: duplicates and out-of-order events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prometheus_client import REGISTRY

from services.core import db, envelope, events, migrate
from services.metrics import tracker
from services.metrics.store import TimelineStore
from tests.conftest import unique

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def lifecycle(ticket_id: str, kind: events.TicketEventType, seconds: float,
              **fields: str) -> envelope.Event:
    data = events.TicketEvent(ticket_id=ticket_id, type=kind,
                              occurred_at=T0 + timedelta(seconds=seconds),
                              received_at=T0, **fields)  # type: ignore[arg-type]
    return events.as_envelope(data, ticket_id, "/test")


def first_response_count(department: str, segment: str) -> float:
    value = REGISTRY.get_sample_value("routing_first_response_seconds_count",
                                      {"department": department, "segment": segment})
    return value or 0.0


async def test_duplicates_and_disorder_give_one_timeline_and_one_observation(
        sqlite_url: str) -> None:
    await migrate.upgrade(sqlite_url)
    engine = db.engine(sqlite_url)
    sessions = db.sessions(engine)
    store = TimelineStore(sessions)
    track = tracker.TrackTicketEvent(store, sessions)
    ticket_id, department = unique("t"), unique("dept")
    responded = lifecycle(ticket_id, events.TicketEventType.RESPONDED, 90)
    routed = lifecycle(ticket_id, events.TicketEventType.ROUTED, 1, department=department,
                       segment="government", reason="route")
    received = lifecycle(ticket_id, events.TicketEventType.RECEIVED, 0)
    before = first_response_count(department, "government")
    try:
        for event in (responded, routed, responded, received, routed):
            assert await track(event) == []
        timelines = await store.routed_since(T0 - timedelta(hours=1), department=department)
    finally:
        await engine.dispose()
    assert len(timelines) == 1
    timeline = timelines[0]
    assert (timeline.received_at, timeline.routed_at, timeline.first_response_at) == (
        T0, T0 + timedelta(seconds=1), T0 + timedelta(seconds=90))
    assert first_response_count(department, "government") == before + 1
