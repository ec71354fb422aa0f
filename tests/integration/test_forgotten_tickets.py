"""The router and the metrics service agree on which tickets are open once the router
forgets one (lifecycle.py), on a real broker and a real SQL store (SQLite and
PostgreSQL): erasing a customer announces their open tickets as `ticket.forgotten` on
`tickets.events` before it deletes them, and the metrics service, reading the topic,
counts them neither open nor in a backlog (routing_open_tickets,
routing_backlog_tickets), as the router's own counts do not; a resolved ticket of theirs
is not announced. Without Kafka, nothing is erased. The router's retention purge
announces the open tickets whose state it deletes likewise."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.core import envelope, events, kafka, lifecycle, topics
from services.core.settings import Settings
from services.metrics import worker
from services.metrics.store import TimelineRow, TimelineStore
from services.router import bootstrap as router_bootstrap
from services.router.models import RoutedTicketRow
from services.router.store import Dispatch, RoutedTickets
from services.segmenter import erasure
from services.segmenter.cache import CustomerCache
from services.segmenter.store import CustomerStore
from tests.conftest import read_topic, unique

ROUTED_AT = datetime.now(UTC) - timedelta(minutes=30)


@pytest.fixture
async def publisher(kafka_bootstrap: str) -> AsyncIterator[kafka.Publisher]:
    settings = Settings(kafka_bootstrap_servers=kafka_bootstrap)
    await kafka.ensure_topics(settings, [topics.EVENTS])
    publisher = kafka.Publisher(settings, client_id=unique("erasure"))
    try:
        yield publisher
    finally:
        await publisher.close()


def routing(ticket_id: str, department: str, customer_id: str,
            at: datetime = ROUTED_AT) -> Dispatch:
    return Dispatch(ticket_id=ticket_id, department=department, segment="consumer",
                    priority=3, deadline=at + timedelta(hours=4), steps=[],
                    payload={"ticket_id": ticket_id}, at=at, event_id=f"e-{ticket_id}",
                    customer_id=customer_id, received_at=at, correlation_id=ticket_id)


def lifecycle_event(ticket_id: str, kind: events.TicketEventType, department: str,
                    at: datetime) -> envelope.Event:
    return events.as_envelope(events.TicketEvent(
        ticket_id=ticket_id, type=kind, occurred_at=at, received_at=at,
        department=department, segment="consumer", reason="route"),
        ticket_id, events.WRITTEN_BY[kind])


async def one_open_one_resolved(sessions: async_sessionmaker[AsyncSession],
                                track: worker.TrackTicketEvent, department: str,
                                customer: str, at: datetime) -> tuple[str, str]:
    """Two tickets of `customer` routed to `department` at `at`, in the router's store and
    the metrics' timelines: one open, one resolved."""
    open_ticket, resolved_ticket = unique("t-open"), unique("t-resolved")
    await RoutedTickets(sessions).record_first_dispatches([
        routing(open_ticket, department, customer, at),
        routing(resolved_ticket, department, customer, at)])
    async with sessions() as session, session.begin():
        await session.execute(update(RoutedTicketRow)
                              .where(RoutedTicketRow.ticket_id == resolved_ticket)
                              .values(status=lifecycle.Status.RESOLVED))
    await tracked(track, [
        lifecycle_event(open_ticket, events.TicketEventType.ROUTED, department, at),
        lifecycle_event(resolved_ticket, events.TicketEventType.ROUTED, department, at),
        lifecycle_event(resolved_ticket, events.TicketEventType.RESOLVED, department,
                        at + timedelta(minutes=5))])
    return open_ticket, resolved_ticket


async def announced_and_tracked(bootstrap: str, track: worker.TrackTicketEvent,
                                *ticket_ids: str) -> list[tuple[str, str, str]]:
    """The announcements of these tickets on the topic, read by the metrics' stage:
    (ticket, type, reason) of each."""
    announced = await read_topic(bootstrap, topics.EVENTS, until=1, settle=1.0,
                                 keep=lambda event: event.ticket_id in ticket_ids)
    await tracked(track, [event for event, _ in announced])
    return [(str(event.ticket_id), event.type, event.data["reason"])
            for event, _ in announced]


async def tracked(track: worker.TrackTicketEvent, batch: list[envelope.Event]) -> None:
    """The metrics stage's transform over one batch, as the stage runs it."""
    await track.prefetch(batch)
    for event in batch:
        await track(event)
    await track.finish_batch()


def gauges(department: str) -> tuple[float | None, float | None]:
    return (REGISTRY.get_sample_value("routing_open_tickets", {"department": department}),
            REGISTRY.get_sample_value("routing_backlog_tickets", {"department": department}))


class TestAnErasedCustomersOpenTicket:
    async def test_leaves_the_metrics_open_and_backlog_counts_as_the_routers(
            self, sessions: async_sessionmaker[AsyncSession], publisher: kafka.Publisher,
            kafka_bootstrap: str) -> None:
        department, customer = unique("care"), unique("c")
        timelines = TimelineStore(sessions)
        track = worker.TrackTicketEvent(worker.TimelineUpdates(timelines, sessions))
        open_ticket, resolved_ticket = await one_open_one_resolved(
            sessions, track, department, customer, ROUTED_AT)
        await worker.measure_backlog(timelines, lambda: {department})
        assert gauges(department) == (1.0, 1.0)

        await erasure.erase_customer(
            CustomerStore(sessions, cache=CustomerCache(max_customers=1, ttl_seconds=1)),
            customer, announce=publisher.publish)
        announced = await announced_and_tracked(kafka_bootstrap, track, open_ticket,
                                                resolved_ticket)
        await worker.measure_backlog(timelines, lambda: {department})

        assert gauges(department) == (0.0, 0.0)
        assert await timelines.open_per_department() == {}
        assert announced == [(open_ticket, events.TicketEventType.FORGOTTEN, events.ERASURE)]
        async with sessions() as session:
            row = await session.get(TimelineRow, open_ticket)
        assert row is not None and row.forgotten_reason == events.ERASURE

    async def test_without_kafka_nothing_is_erased(
            self, sessions: async_sessionmaker[AsyncSession]) -> None:
        """The announcement fails: the erasure is rolled back, to be asked again (503)."""
        customer, ticket_id = unique("c"), unique("t")
        routed = RoutedTickets(sessions)
        await routed.record_first_dispatches([routing(ticket_id, "care", customer)])
        nowhere = kafka.Publisher(Settings(kafka_bootstrap_servers="127.0.0.1:9",
                                           produce_timeout_seconds=1.0), client_id="nowhere")
        try:
            with pytest.raises(kafka.PublishFailed):
                await erasure.erase_customer(
                    CustomerStore(sessions, cache=CustomerCache(max_customers=1,
                                                                ttl_seconds=1)),
                    customer, announce=nowhere.publish)
        finally:
            await nowhere.close()
        assert await routed.get(ticket_id) is not None


class TestAnOpenTicketPastItsStatesRetention:
    async def test_leaves_the_metrics_open_and_backlog_counts_as_the_routers(
            self, sessions: async_sessionmaker[AsyncSession], publisher: kafka.Publisher,
            kafka_bootstrap: str) -> None:
        """The router's purge job, as its app runs it, forgets the states unchanged for
        RETENTION_TICKET_STATES_DAYS (90): the open one's is announced, the timeline
        (kept 400 days) counts it open no more."""
        department, settings = unique("care"), Settings()
        now = datetime.now(UTC)
        long_ago = now - timedelta(days=settings.retention_ticket_states_days + 1)
        timelines = TimelineStore(sessions)
        track = worker.TrackTicketEvent(worker.TimelineUpdates(timelines, sessions))
        open_ticket, resolved_ticket = await one_open_one_resolved(
            sessions, track, department, unique("c"), long_ago)
        await worker.measure_backlog(timelines, lambda: {department})
        assert gauges(department) == (1.0, 1.0)

        purged = await router_bootstrap.purge_past_retention(
            settings, sessions, now=now, announce=publisher.publish)
        announced = await announced_and_tracked(kafka_bootstrap, track, open_ticket,
                                                resolved_ticket)
        await worker.measure_backlog(timelines, lambda: {department})

        assert purged["routed_tickets"] == 2
        assert gauges(department) == (0.0, 0.0)
        assert announced == [(open_ticket, events.TicketEventType.FORGOTTEN,
                              events.RETENTION)]
