"""Report turns over HTTP, on the metrics service's app and real store (SQLite): a
credential's second report while its first is computed is refused with 429 and
Retry-After, and other callers' reports wait their turn rather than fail; every report
route takes turns."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import datetime
from typing import Any

import httpx
from fastapi import FastAPI
from prometheus_client import REGISTRY

from services.core import access, http, migrate, service_context
from services.core.settings import Settings
from services.metrics import api, parity_api
from services.metrics.timeline import Timeline
from services.simulator import api as simulator_api
from tests import credentials
from tests.conftest import unique
from tests.integration.test_timelines import metrics_context

# Every report over a window a service serves: the routes that must take turns.
REPORT_ROUTES = {("GET", "/v1/departments"), ("GET", "/v1/departments/{department}/stats"),
                 ("GET", "/v1/segments/stats"), ("GET", "/v1/parity/stats"),
                 ("POST", "/v1/simulations")}


class HeldPages:
    """The store, whose reports wait at their first page until the test lets them go."""

    def __init__(self, store: Any) -> None:
        self.store, self.reading, self.go = store, 0, asyncio.Event()

    async def routed_pages(self, since: datetime, department: str | None = None,
                           ) -> AsyncIterator[list[Timeline]]:
        self.reading += 1
        await self.go.wait()
        async for page in self.store.routed_pages(since, department):
            yield page

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


async def until(condition: Any) -> None:
    """Wait for `condition` (each request reads its credential in the store first)."""
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the condition never held in 10 s")


def refused_reports() -> float:
    return REGISTRY.get_sample_value("http_auth_refused_total",
                                     {"outcome": "report_in_progress"}) or 0.0


async def test_one_report_a_credential_and_the_others_wait_their_turn(
        sqlite_url: str) -> None:
    await migrate.upgrade(sqlite_url)
    department = unique("dept")
    app = FastAPI()
    context = service_context.install(
        app, Settings(database_url=sqlite_url, reports_at_once=1, retry_after_seconds=7))
    async with metrics_context(sqlite_url) as metrics:
        held = HeldPages(metrics.timelines)
        context.provide(replace(metrics, timelines=held))
        app.include_router(api.api)
        app.include_router(parity_api.api)
        http.install(app, ready=lambda: True)
        transport = httpx.ASGITransport(app=app)
        async with credentials.authenticating(app, sqlite_url) as keys, \
                httpx.AsyncClient(transport=transport, base_url="http://metrics") as client:
            admin = await credentials.headers_of(keys, "admin")
            other_admin = await credentials.headers_of(keys, "admin")
            team = await credentials.headers_of(keys, "department", department)
            week = {"window": "7d"}

            first = asyncio.create_task(client.get("/v1/departments", params=week,
                                                   headers=admin))
            await until(lambda: held.reading == 1 or first.done())
            assert not first.done(), first.result().text
            before = refused_reports()
            again = await client.get("/v1/segments/stats", params=week, headers=admin)
            assert again.status_code == 429
            assert again.headers["Retry-After"] == "7"
            assert again.json()["error"] == "report_in_progress"
            assert refused_reports() == before + 1

            waiting = [asyncio.create_task(client.get(
                           f"/v1/departments/{department}/stats", params=week, headers=team)),
                       asyncio.create_task(client.get("/v1/parity/stats", params=week,
                                                      headers=other_admin))]
            await until(lambda: context.report_turns.holders == 3)
            assert held.reading == 1 and not any(task.done() for task in waiting)

            held.go.set()
            answers = [await task for task in (first, *waiting)]
            assert [answer.status_code for answer in answers] == [200, 200, 200]
            assert context.report_turns.holders == 0
            after = await client.get("/v1/segments/stats", params=week, headers=admin)
            assert after.status_code == 200
            # a caller refused before its turn (a department's credential for another
            # department) holds none after its answer
            elsewhere = await client.get("/v1/departments/elsewhere/stats", params=week,
                                         headers=team)
            assert elsewhere.status_code == 403 and context.report_turns.holders == 0


async def test_every_report_route_takes_turns(sqlite_url: str) -> None:
    """Each report route, asked with a credential whose report is under way, is refused
    (the simulator's in the router, the others in the metrics service)."""
    await migrate.upgrade(sqlite_url)
    app = FastAPI()
    context = service_context.install(app, Settings(database_url=sqlite_url))
    for routes in (api.api, parity_api.api, simulator_api.api):
        app.include_router(routes)
    http.install(app, ready=lambda: True)
    async with metrics_context(sqlite_url) as metrics, \
            credentials.authenticating(app, sqlite_url) as keys, \
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                              base_url="http://service") as client:
        context.provide(metrics)
        admin = await credentials.headers_of(keys, "admin")
        split = access.split_token(admin["Authorization"].removeprefix("Bearer "))
        assert split is not None
        async with context.report_turns.turn(split[0]):
            answers = {(method, path): await client.request(
                method, path.replace("{department}", "sales"), headers=admin,
                json={"start": "2026-11-01T00:00:00Z", "end": "2026-11-02T00:00:00Z"}
                if method == "POST" else None) for method, path in REPORT_ROUTES}
    assert {route: (answer.status_code, answer.json()["error"])
            for route, answer in answers.items()} == {
        route: (429, "report_in_progress") for route in REPORT_ROUTES}
