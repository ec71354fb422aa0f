"""Service parity at the metrics side, over a real store (SQLite and PostgreSQL): each
ticket's customer is found through the router's ticket state, their protected
attributes in the customer store; only bands come out, in the API and in /metrics."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
from fastapi import FastAPI
from prometheus_client import REGISTRY
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.core import http, service_context
from services.core.settings import Settings
from services.metrics import bootstrap, exporter, parity_api, parity_store, service, worker
from services.metrics.store import TimelineStore
from services.metrics.timeline import Assignment, Timeline
from services.router.models import RoutedTicketRow
from services.segmenter.models import CustomerRow
from tests import credentials

TARGET = timedelta(hours=2)


async def history(sessions: async_sessionmaker[AsyncSession], *, now: datetime,
                  slow_gender: str | None, customers: int = 120, stateless: int = 0) -> None:
    """Customers of both genders, every age and band, one ticket each, routed four hours
    to two days ago; the tickets of `slow_gender` answered after 3h (target 2h), the
    others after 30 minutes. Plus tickets of customers the store does not know, and
    `stateless` tickets whose routing state is gone (purged, or never written)."""
    rng = random.Random(5)
    timelines = []
    async with sessions() as session:
        for n in range(customers + 10 + stateless):
            customer_id, ticket_id = f"cust-{n}", f"ticket-{n}"
            gender = ("female", "male")[n % 2]
            if n < customers:
                session.add(CustomerRow(
                    customer_id=customer_id, customer_type="individual", name=f"Name {n}",
                    # each pair (one of either gender) shares a birth year and ...
                    gender=gender, birth_date=date(1940 + (n // 2 * 7) % 60, 3, 1),
                    # ... every band has as many of either: no other gap in service.
                    socio_economic_band=("low", "middle", "high")[n % 3]))
            received = now - timedelta(hours=rng.uniform(4, 48))
            if n < customers + 10:
                session.add(RoutedTicketRow(
                    ticket_id=ticket_id, department="care", segment="general",
                    status="responded", payload={}, updated_at=now, customer_id=customer_id))
            answer = timedelta(hours=3 if gender == slow_gender else 0.5)
            timelines.append(Timeline(
                ticket_id=ticket_id, department="care", segment="general",
                received_at=received, routed_at=received, first_response_at=received + answer,
                first_response_deadline=received + TARGET,
                assignments=(Assignment("routed", "care", received, "route"),)))
        await session.flush()
        await TimelineStore(sessions).save_many(session, timelines)
        await session.commit()


@asynccontextmanager
async def parity_client(sessions: async_sessionmaker[AsyncSession], database_url: str,
                        **setting: Any) -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    store = TimelineStore(sessions)
    settings = Settings(database_url=database_url, **setting)
    service_context.of(app).provide(bootstrap.wire(
        settings, timelines=store, updates=worker.TimelineUpdates(store, sessions),
        bands=parity_store.TicketBands(sessions), exporter=exporter,
        in_table=bootstrap.table_in_force(settings, sessions)))
    app.include_router(parity_api.api)
    http.install(app, ready=lambda: True)
    async with credentials.authenticating(app, database_url) as keys, httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://metrics",
            headers=await credentials.headers_of(keys, "admin")) as client:
        yield client


def attribute(answer: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(a for a in answer["attributes"] if a["attribute"] == name)
    return found


class TestKnownDisparity:
    async def test_the_group_served_worse_is_flagged_and_exported(
            self, sessions: async_sessionmaker[AsyncSession], database_url: str) -> None:
        now = datetime.now(UTC)
        await history(sessions, now=now, slow_gender="male")
        async with parity_client(sessions, database_url) as client:
            answer = (await client.get("/v1/parity/stats", params={"window": "7d"})).json()
        gender = attribute(answer, "gender")
        assert gender["below_threshold"] == ["male"]
        male = next(g for g in gender["groups"] if g["group"] == "male")
        assert (male["tickets"], male["target_attainment"]) == (60, 0.0)
        assert male["ratios"]["first_response"] == round(0.5 / 3, 4)
        assert gender["best_served"]["target_attainment"] == "female"
        # Customers the store does not know: counted, not compared; too few here to show.
        assert next(g for g in gender["groups"] if g["group"] == "unknown")["suppressed"]
        for other in ("socio_economic_band", "age_band"):
            assert attribute(answer, other)["below_threshold"] == []

        config = parity_store.ParityConfig.of(Settings(database_url=database_url))
        await service.export_parity(TimelineStore(sessions), parity_store.TicketBands(sessions),
                                    exporter, config, now=now)
        assert REGISTRY.get_sample_value("routing_service_parity_ratio", {
            "attribute": "gender", "group": "male", "measure": "target_attainment"}) == 0.0
        assert REGISTRY.get_sample_value("routing_service_parity_below_threshold", {
            "attribute": "gender", "group": "male"}) == 1.0
        assert REGISTRY.get_sample_value("routing_service_parity_threshold") == 0.8

    async def test_a_ticket_whose_routing_state_is_gone_counts_as_unknown(
            self, sessions: async_sessionmaker[AsyncSession], database_url: str) -> None:
        await history(sessions, now=datetime.now(UTC), slow_gender=None, stateless=40)
        async with parity_client(sessions, database_url) as client:
            answer = (await client.get("/v1/parity/stats", params={"window": "7d"})).json()
        for name in ("gender", "age_band", "socio_economic_band"):
            unknown = next(g for g in attribute(answer, name)["groups"]
                           if g["group"] == "unknown")
            assert unknown["tickets"] == 10 + 40, name  # unknown customers, and gone state

    async def test_no_personal_value_leaves_the_service(
            self, sessions: async_sessionmaker[AsyncSession], database_url: str) -> None:
        await history(sessions, now=datetime.now(UTC), slow_gender="female")
        async with parity_client(sessions, database_url) as client:
            text = (await client.get("/v1/parity/stats")).text
        assert "-03-01" not in text  # no birth date (every one is on the 1st of March)
        assert "cust-" not in text and "ticket-" not in text and "Name" not in text


class TestNoDisparity:
    async def test_groups_served_alike_are_not_flagged(
            self, sessions: async_sessionmaker[AsyncSession], database_url: str) -> None:
        await history(sessions, now=datetime.now(UTC), slow_gender=None)
        async with parity_client(sessions, database_url) as client:
            answer = (await client.get("/v1/parity/stats", params={"window": "7d"})).json()
        assert answer["threshold"] == 0.8 and answer["minimum_group_size"] == 30
        assert [a["below_threshold"] for a in answer["attributes"]] == [[], [], []]
        assert all(g["disparity_ratio"] == 1.0 for a in answer["attributes"]
                   for g in a["groups"] if g["ratios"])


class TestRequests:
    async def test_without_a_window_the_parity_window_is_read(
            self, sessions: async_sessionmaker[AsyncSession], database_url: str) -> None:
        """Tickets routed four hours to two days ago: a day's window holds fewer of them
        than PARITY_WINDOW's default (7d), which holds every one."""
        await history(sessions, now=datetime.now(UTC), slow_gender=None)
        for setting, seconds in (({}, 7 * 86400), ({"parity_window": "1d"}, 86400)):
            async with parity_client(sessions, database_url, **setting) as client:
                answer = (await client.get("/v1/parity/stats")).json()
            assert answer["window_seconds"] == seconds, setting
            # The known customers' tickets (the few unknown ones are too few to show).
            counted = sum(g["tickets"] or 0 for g in attribute(answer, "gender")["groups"])
            assert counted == 120 if seconds == 7 * 86400 else counted < 120, setting

    async def test_a_bad_window_is_refused_naming_the_field(
            self, sessions: async_sessionmaker[AsyncSession], database_url: str) -> None:
        async with parity_client(sessions, database_url) as client:
            refused = await client.get("/v1/parity/stats", params={"window": "1 week"})
        assert refused.status_code == 422
        assert "query.window" in refused.text
