"""Ticket timelines in a real SQL store: duplicates and out-of-order events, hand-overs,
first-response deadlines, and the stats API over them."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Collection
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import REGISTRY
from sqlalchemy import text

from devtools.postgres import LocalPostgres
from services.core import db, envelope, events, http, migrate, service_context
from services.metrics import (
    api,
    parity,
    parity_store,
    service,
    stats,
    worker,
)
from services.metrics import store as store_module
from services.metrics.store import TimelineStore
from services.metrics.timeline import Assignment, Timeline
from tests import credentials
from tests.conftest import unique
from tests.databases import ExternalPostgres, fresh_postgres_database
from tests.metrics_context import metrics_context

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def lifecycle(ticket_id: str, kind: events.TicketEventType, seconds: float,
              **fields: object) -> envelope.Event:
    data = events.TicketEvent(ticket_id=ticket_id, type=kind,
                              occurred_at=T0 + timedelta(seconds=seconds),
                              received_at=T0, **fields)  # type: ignore[arg-type]
    return events.as_envelope(data, ticket_id, events.WRITTEN_BY[kind])


async def track_batch(track: worker.TrackTicketEvent, *batch: envelope.Event) -> list[object]:
    """Run the events through the stage's transform as one batch, as the stage does."""
    await track.prefetch(batch)
    outputs = [output for event in batch for output in await track(event)]
    await track.finish_batch()
    return outputs


def first_response_count(department: str, segment: str) -> float:
    value = REGISTRY.get_sample_value("routing_first_response_seconds_count",
                                      {"department": department, "segment": segment})
    return value or 0.0


@pytest.mark.parametrize("one_batch", [False, True], ids=["batch by batch", "one batch"])
async def test_duplicates_and_disorder_give_one_timeline_and_one_observation(
        sqlite_url: str, one_batch: bool) -> None:
    await migrate.upgrade(sqlite_url)
    engine = db.engine(sqlite_url)
    sessions = db.sessions(engine)
    store = TimelineStore(sessions)
    track = worker.TrackTicketEvent(worker.TimelineUpdates(store, sessions))
    ticket_id, department = unique("t"), unique("dept")
    responded = lifecycle(ticket_id, events.TicketEventType.RESPONDED, 90)
    routed = lifecycle(ticket_id, events.TicketEventType.ROUTED, 1, department=department,
                       segment="government", reason="route")
    received = lifecycle(ticket_id, events.TicketEventType.RECEIVED, 0)
    coming = (responded, routed, responded, received, routed)
    before = first_response_count(department, "government")
    try:
        batches = [coming] if one_batch else [(event,) for event in coming]
        for batch in batches:
            assert await track_batch(track, *batch) == []
        timelines = await all_routed(store, T0 - timedelta(hours=1), department=department)
    finally:
        await engine.dispose()
    assert len(timelines) == 1
    timeline = timelines[0]
    assert (timeline.received_at, timeline.routed_at, timeline.first_response_at) == (
        T0, T0 + timedelta(seconds=1), T0 + timedelta(seconds=90))
    assert first_response_count(department, "government") == before + 1


async def all_routed(store: TimelineStore, since: datetime,
                       department: str | None = None) -> list[Timeline]:
    return [timeline async for page in store.routed_pages(since, department)
            for timeline in page]


def outcome_count(department: str, outcome: str) -> float:
    value = REGISTRY.get_sample_value("routing_first_response_target_total",
                                      {"department": department, "segment": "government",
                                       "outcome": outcome})
    return value or 0.0


@asynccontextmanager
async def timeline_store(database_url: str) -> AsyncIterator[
        tuple[TimelineStore, worker.TimelineUpdates]]:
    async with metrics_context(database_url) as metrics:
        assert isinstance(metrics.timelines, TimelineStore)
        assert isinstance(metrics.updates, worker.TimelineUpdates)
        yield metrics.timelines, metrics.updates


class TestHandOversAndTargets:
    """On SQLite and PostgreSQL (fixture `database_url`, migrated to head)."""

    async def test_a_transfer_and_a_missed_deadline_are_kept_and_counted_once(
            self, database_url: str) -> None:
        ticket_id, first, second = unique("t"), unique("dept"), unique("dept")
        deadline = T0 + timedelta(minutes=15)
        routed = lifecycle(ticket_id, events.TicketEventType.ROUTED, 1, department=first,
                           segment="government", reason="route",
                           first_response_deadline=deadline.isoformat())
        transferred = lifecycle(ticket_id, events.TicketEventType.TRANSFERRED, 60,
                                department=second, from_department=first,
                                segment="government", reason="transfer")
        async with timeline_store(database_url) as (store, updates):
            track = worker.TrackTicketEvent(updates)
            for event in (transferred, routed, transferred, routed):
                await track_batch(track, event)
            check = worker.DeadlineCheck(store, updates, grace=timedelta(0))
            # Past due by targets.past_due, in the query too: the deadline is in time.
            assert ticket_id not in await store.past_deadline(deadline)
            assert ticket_id in await store.past_deadline(deadline + timedelta(microseconds=1))
            assert await check(now=deadline) == 0
            assert await check(now=deadline + timedelta(seconds=1)) == 1
            assert await check(now=deadline + timedelta(hours=1)) == 0
            await track_batch(track, lifecycle(ticket_id, events.TicketEventType.RESPONDED, 1800))
            [kept] = await all_routed(store, T0 - timedelta(hours=1), department=first)
            backlog = await store.open_per_department()

        assert kept.department == second
        assert kept.transferred_at == T0 + timedelta(seconds=60)
        assert kept.first_response_deadline == deadline
        assert kept.target_outcome == "missed"
        assert kept.target_department == second  # held it when the deadline passed
        assert [(a.kind, a.department) for a in kept.assignments] == [
            ("routed", first), ("transferred", second)]
        assert backlog[second] == 1 and first not in backlog
        assert outcome_count(second, "missed") == 1
        assert REGISTRY.get_sample_value("routing_tickets_transferred_total", {
            "from_department": first, "department": second}) == 1

    async def test_a_row_from_before_the_migration_is_not_counted_again(
            self, database_url: str) -> None:
        ticket_id, department = unique("t"), unique("dept")
        engine = db.engine(database_url)
        try:
            async with engine.begin() as connection:
                await connection.execute(text(
                    "INSERT INTO ticket_timelines (ticket_id, department, segment,"
                    " routing_reason, received_at, routed_at, observed) VALUES"
                    " (:ticket, :department, 'government', 'route', :received, :routed,"
                    " 'pipeline_latency,routed')"),
                    {"ticket": ticket_id, "department": department, "received": T0,
                     "routed": T0 + timedelta(seconds=1)})
        finally:
            await engine.dispose()
        async with timeline_store(database_url) as (_store, updates):
            track = worker.TrackTicketEvent(updates)
            await track_batch(track, lifecycle(ticket_id, events.TicketEventType.ROUTED, 1,
                                  department=department, segment="government"))
            await track_batch(track, lifecycle(ticket_id, events.TicketEventType.RESPONDED, 90))
        routed = REGISTRY.get_sample_value("routing_tickets_routed_total", {
            "department": department, "segment": "government", "reason": "route"})
        assert routed is None
        assert first_response_count(department, "government") == 1


class TestStatsApi:
    async def test_department_and_segment_stats_with_target_attainment(
            self, sqlite_url: str) -> None:
        await migrate.upgrade(sqlite_url)
        now = datetime.now(UTC)
        department = unique("dept")
        async with metrics_context(sqlite_url) as metrics:
            track = worker.TrackTicketEvent(metrics.updates)
            for answer_after in (60, 600, None):
                ticket_id = unique("t")
                await track_batch(track, at(now, ticket_id, events.TicketEventType.ROUTED, -700,
                               department=department, segment="government",
                               first_response_deadline=(now - timedelta(seconds=400))))
                if answer_after is not None:
                    await track_batch(track, at(now, ticket_id, events.TicketEventType.RESPONDED,
                                   -700 + answer_after))
            app = FastAPI()
            service_context.of(app).provide(metrics)
            app.include_router(api.api)
            http.install(app, ready=lambda: True)
            transport = httpx.ASGITransport(app=app)
            async with credentials.authenticating(app, sqlite_url) as keys, \
                    httpx.AsyncClient(transport=transport, base_url="http://metrics",
                                      headers=await credentials.headers_of(keys, "admin"),
                                      ) as client:
                one = (await client.get(f"/v1/departments/{department}/stats",
                                        params={"window": "1h"})).json()
                every = (await client.get("/v1/departments", params={"window": "1h"})).json()
                segments = (await client.get("/v1/segments/stats",
                                             params={"window": "1h"})).json()
                refused = await client.get("/v1/departments", params={"window": "1 week"})

        # backlog: awaiting a first response (lifecycle.py), the unanswered one
        assert (one["volume"], one["responded"], one["backlog"]) == (3, 2, 1)
        assert one["first_response_target"] == {"met": 1, "missed": 2, "pending": 0,
                                                "without_target": 0, "ratio": 1 / 3}
        assert one["first_response_seconds"]["p50"] == 60.0
        assert [d for d in every["departments"] if d["department"] == department] == [
            {"department": department, **{k: v for k, v in one.items() if k != "department"}}]
        [government] = [s for s in segments["segments"] if s["segment"] == "government"]
        assert government["first_response_target"]["missed"] >= 2
        assert refused.status_code == 422


class CountingPages:
    """The store; at each page it hands out, how many timelines are alive, and whether
    another task (`tick`) ran while that page was read."""

    def __init__(self, store: TimelineStore) -> None:
        self.store, self.pages, self.most_alive = store, 0, 0
        self.before = alive()
        self.ticks = 0
        self.others_ran: list[bool] = []

    async def routed_pages(self, since: datetime, department: str | None = None,
                           ) -> AsyncIterator[list[Timeline]]:
        asked: int | None = None
        async for page in self.store.routed_pages(since, department):
            if asked is not None:
                self.others_ran.append(self.ticks > asked)
            yield page  # back here once the reader asks for the next page
            asked = self.ticks
            self.pages += 1
            self.most_alive = max(self.most_alive, alive() - self.before)

    async def tick(self) -> None:
        while True:
            self.ticks += 1
            await asyncio.sleep(0)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


def alive() -> int:
    gc.collect()
    return sum(1 for thing in gc.get_objects() if isinstance(thing, Timeline))


BASE = datetime(2041, 3, 1, tzinfo=UTC)  # after any other test's tickets
NOW, WINDOW = BASE + timedelta(hours=4), timedelta(days=1)


def a_window(first: str, second: str, segment: str) -> list[Timeline]:
    """200 tickets, a minute apart: four in five with `first`, answered after 10 s times
    their number but every seventh (the target: 3 min)."""
    return [Timeline(
        ticket_id=unique("t"), department=first if n % 5 else second, segment=segment,
        routing_reason="route", received_at=routed, routed_at=routed,
        first_response_at=routed + timedelta(seconds=10 * n) if n % 7 else None,
        first_response_deadline=routed + timedelta(minutes=3),
        assignments=(Assignment("routed", first if n % 5 else second, routed, "route",
                                counted=True),), observed=frozenset({"routed"}))
        for n in range(200) for routed in [BASE + timedelta(minutes=n)]]


def genders(made: list[Timeline]) -> dict[str, dict[str, str]]:
    return {t.ticket_id: {"gender": ("female", "male", "other")[n % 3]}
            for n, t in enumerate(made)}


PARITY = parity_store.ParityConfig(WINDOW, ("gender",), parity.Policy(minimum_group_size=5))


class TestALongWindow:
    """The reports read their window a page at a time (store.PAGE_ROWS, made small
    here, though larger than the 50 rows SQLAlchemy's asyncpg cursor reads first); on
    SQLite and PostgreSQL."""

    async def test_every_ticket_is_counted_once_and_about_a_page_is_held_at_a_time(
            self, database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(store_module, "PAGE_ROWS", 60)
        first, second, segment = unique("dept"), unique("dept"), unique("seg")
        made = a_window(first, second, segment)
        before_the_window = replace(made[1], ticket_id=unique("t"),
                                    routed_at=NOW - WINDOW - timedelta(seconds=1))
        gender = genders(made)
        asked: list[int] = []

        async def bands(ticket_ids: Collection[str], *, today: date) -> dict[str, dict[str, str]]:
            asked.append(len(ticket_ids))
            return {ticket_id: gender[ticket_id] for ticket_id in ticket_ids}

        engine = db.engine(database_url)
        store = TimelineStore(db.sessions(engine))
        counting = CountingPages(store)
        ticking = asyncio.create_task(counting.tick())
        try:
            async with engine.begin() as connection:
                await store.save_many(connection, [*made, before_the_window])
            every = await service.all_departments(counting, WINDOW, now=NOW)  # type: ignore[arg-type]
            segments = await service.segment_stats(counting, WINDOW, now=NOW)  # type: ignore[arg-type]
            one = await service.department_stats(counting, first, WINDOW, now=NOW)  # type: ignore[arg-type]
            parities = await service.parity_stats(counting, bands, PARITY, now=NOW)  # type: ignore[arg-type]
        finally:
            ticking.cancel()
            await engine.dispose()

        # By hand: `first` holds the 160 tickets whose number n is not a multiple of 5;
        # of them those with n a multiple of 7 are unanswered (23), and the others were
        # answered 10 n seconds after routing: in time (3 min) up to n = 18 (13 of them).
        answered = sorted(10.0 * n for n in range(200) if n % 5 and n % 7)
        assert (one.volume, one.responded, one.backlog) == (160, 137, 23)
        assert one.first_response_seconds.p50 == answered[68] == 1010.0  # the 69th of 137
        assert (one.first_response_target.met, one.first_response_target.missed) == (13, 147)
        assert segments[segment].volume == 200  # not the one routed before the window
        assert segments[segment].backlog == 29
        # The same as counted over the whole list at once: nothing lost or counted twice
        assert one == every[first] == stats.service_stats(
            WINDOW, made, 23, now=NOW, department=first)
        assert every[second] == stats.service_stats(WINDOW, made, 6, now=NOW,
                                                    department=second)
        assert segments[segment] == stats.service_stats(WINDOW, made, 29, now=NOW)
        assert parities == parity.parity_by_attribute(
            made, gender, attributes=("gender",), now=NOW, policy=PARITY.policy)
        assert asked == [60, 60, 60, 20]  # the customers' bands a page at a time
        # pages of 60: the 200 tickets for every department, every segment and parity;
        # for one department, its 160
        assert counting.pages == 4 + 4 + 3 + 4
        assert counting.most_alive <= 2 * 60
        # the event loop served another task while each next page was read
        assert len(counting.others_ran) == 3 + 3 + 2 + 3 and all(counting.others_ran)

    async def test_a_report_that_fails_between_pages_lets_go_of_its_connection(
            self, database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(store_module, "PAGE_ROWS", 60)
        made = a_window(unique("dept"), unique("dept"), unique("seg"))

        async def bands(ticket_ids: Collection[str], *, today: date) -> dict[str, dict[str, str]]:
            raise ConnectionError("the customers' store is down")

        engine = db.engine(database_url)
        store = TimelineStore(db.sessions(engine))
        try:
            async with engine.begin() as connection:
                await store.save_many(connection, made)
            with pytest.raises(ConnectionError) as failed:
                await service.parity_stats(store, bands, PARITY, now=NOW)  # type: ignore[arg-type]
            # at once, while the failure (and with it the report's frames) is still held
            assert failed.value is not None and engine.pool.checkedout() == 0  # type: ignore[attr-defined]
        finally:
            await engine.dispose()

    async def test_a_report_longer_than_the_statement_limit_completes(
            self, postgres_server: LocalPostgres | ExternalPostgres,
            monkeypatch: pytest.MonkeyPatch) -> None:
        """PostgreSQL (SQLite has no statement limit): the limit bounds each fetch of a
        page, not the window's whole read. Here the report takes about 1.2 s over a
        limit of 1 s, its four pages' bands read slowly."""
        monkeypatch.setattr(store_module, "PAGE_ROWS", 60)
        made = a_window(unique("dept"), unique("dept"), unique("seg"))
        gender = genders(made)

        async def bands(ticket_ids: Collection[str], *, today: date) -> dict[str, dict[str, str]]:
            await asyncio.sleep(0.3)
            return {ticket_id: gender[ticket_id] for ticket_id in ticket_ids}

        async with fresh_postgres_database(postgres_server.url) as url:
            await migrate.upgrade(url)
            engine = db.engine(url, statement_seconds=1.0)
            store = TimelineStore(db.sessions(engine))
            try:
                async with engine.begin() as connection:
                    await store.save_many(connection, made)
                parities = await service.parity_stats(store, bands, PARITY, now=NOW)  # type: ignore[arg-type]
            finally:
                await engine.dispose()
        assert parities == parity.parity_by_attribute(
            made, gender, attributes=("gender",), now=NOW, policy=PARITY.policy)


def at(now: datetime, ticket_id: str, kind: events.TicketEventType, seconds: float,
       **fields: object) -> envelope.Event:
    data = events.TicketEvent(ticket_id=ticket_id, type=kind,
                              occurred_at=now + timedelta(seconds=seconds),
                              received_at=now - timedelta(seconds=700),
                              **fields)  # type: ignore[arg-type]
    return events.as_envelope(data, ticket_id, events.WRITTEN_BY[kind])
