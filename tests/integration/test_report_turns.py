"""Report turns over HTTP, on the services' apps and a real store (SQLite): a
credential's second report while its first is under way is refused with 429 and
Retry-After, other callers' reports wait their turn rather than fail, a request refused
for its input or its credential does not wait, and every report route takes turns and
documents its 429, and a caller's mistake is answered at once; served by uvicorn, a
caller that hangs up while its report waits gives its place up."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import REGISTRY

from services.core import (
    access,
    config_changes,
    config_store,
    db,
    http,
    kafka,
    migrate,
    report_turns,
    service_context,
    topics,
)
from services.core.live_config import LiveConfig
from services.core.settings import PROJECT_ROOT, Settings
from services.metrics import api, parity_api
from services.metrics.timeline import Timeline
from services.router import table_file
from services.segmenter import admin_api, live_rules, rules_api
from services.segmenter import bootstrap as segmenter_bootstrap
from services.simulator import api as simulator_api
from tests import credentials
from tests.conftest import TEST_ROUTING_TABLE, unique
from tests.metrics_context import metrics_context
from tests.served import served
from tests.waits import until

RULES = PROJECT_ROOT / "config" / "segments.yaml"
YAML = {"content-type": "application/yaml"}
# Every report over a window or over the whole customer base, and its request.
REPORT_ROUTES: dict[tuple[str, str], dict[str, Any]] = {
    ("GET", "/v1/departments"): {"params": {"window": "7d"}},
    ("GET", "/v1/departments/{department}/stats"): {"params": {"window": "7d"}},
    ("GET", "/v1/segments/stats"): {"params": {"window": "7d"}},
    ("GET", "/v1/parity/stats"): {"params": {"window": "7d"}},
    ("POST", "/v1/simulations"): {"json": {"start": "2026-11-01T00:00:00Z",
                                           "end": "2026-11-02T00:00:00Z"}},
    ("POST", "/v1/segment-rules/dry-run"): {"content": RULES.read_bytes(), "headers": YAML},
    ("POST", "/v1/segment-rules/analysis"): {},
    ("POST", "/v1/tiers/recompute"): {},
}
# A caller's mistake on each report route that takes input: answered 422 at once, in
# turn or not.
MISTAKES: list[tuple[tuple[str, str], dict[str, Any]]] = [
    (("GET", "/v1/departments"), {"params": {"window": "a week"}}),
    (("GET", "/v1/departments/{department}/stats"), {"params": {"window": "0d"}}),
    (("GET", "/v1/segments/stats"), {"params": {"window": "400d"}}),
    (("GET", "/v1/parity/stats"), {"params": {"window": "7 days"}}),
    (("POST", "/v1/simulations"), {"json": {"start": "2026-11-02T00:00:00Z",
                                            "end": "2026-11-01T00:00:00Z"}}),
    # a mistake found in the store: a version it does not hold
    (("POST", "/v1/simulations"), {"json": {"start": "2026-11-01T00:00:00Z",
                                            "end": "2026-11-02T00:00:00Z",
                                            "table_version_id": 999_999}}),
    (("POST", "/v1/segment-rules/dry-run"), {"content": b"rules: [", "headers": YAML}),
    (("POST", "/v1/segment-rules/analysis"), {"content": b"rules: [", "headers": YAML}),
]


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


def refused_reports() -> float:
    return REGISTRY.get_sample_value("routing_http_auth_refused_total",
                                     {"outcome": "report_in_progress", "role": "admin"}) or 0.0


async def test_one_report_a_credential_and_the_others_wait_their_turn(
        sqlite_url: str) -> None:
    await migrate.upgrade(sqlite_url)
    # A department of the routing table in force (the file's, config/routing.yaml: none
    # stored), with no tickets: answered, with zeros, once its turn comes.
    department = "public_sector"
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

            # Refused for their input at once, turns or not.
            bad_window = await client.get("/v1/segments/stats", params={"window": "1 week"},
                                          headers=admin)
            # A department nobody knows is looked up in its caller's turn, as a report, and
            # before a department credential's scope (unknown_departments: a typo of its
            # own name is told as one): by a credential whose report waits, a 429, whoever's.
            elsewhere = await client.get("/v1/departments/elsewhere/stats", params=week,
                                         headers=team)
            no_such = await client.get("/v1/departments/elsewhere/stats", params=week,
                                       headers=other_admin)
            # One of the table's, not the team's: its scope is judged at once, no search.
            not_theirs = await client.get("/v1/departments/customer_care/stats",
                                          params=week, headers=team)
            assert (bad_window.status_code, elsewhere.status_code,
                    no_such.status_code, not_theirs.status_code) == (422, 429, 429, 403)
            assert context.report_turns.holders == 3

            held.go.set()
            answers = [await task for task in (first, *waiting)]
            assert [answer.status_code for answer in answers] == [200, 200, 200]
            assert context.report_turns.holders == 0
            after = await client.get("/v1/segments/stats", params=week, headers=admin)
            assert after.status_code == 200


async def test_a_caller_that_hangs_up_while_its_report_waits_gives_its_place_up(
        sqlite_url: str, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """Its report is never computed, its credential may ask again at once (not 429), and
    it is logged."""
    monkeypatch.setattr(report_turns, "GONE_POLL_SECONDS", 0.05)
    caplog.set_level(logging.INFO, logger=report_turns.__name__)
    await migrate.upgrade(sqlite_url)
    app = FastAPI()
    context = service_context.install(app, Settings(database_url=sqlite_url,
                                                    reports_at_once=1))
    async with metrics_context(sqlite_url) as metrics:
        held = HeldPages(metrics.timelines)
        context.provide(replace(metrics, timelines=held))
        app.include_router(api.api)
        http.install(app, ready=lambda: True)
        async with credentials.authenticating(app, sqlite_url) as keys, \
                served(app) as url, httpx.AsyncClient(base_url=url, timeout=30) as client:
            first_admin = await credentials.headers_of(keys, "admin")
            leaver = await credentials.headers_of(keys, "admin")
            week = {"window": "7d"}
            first = asyncio.create_task(client.get("/v1/departments", params=week,
                                                   headers=first_admin))
            asked = [first]
            try:
                await until(lambda: held.reading == 1 or first.done())
                assert not first.done(), first.result().text
                async with httpx.AsyncClient(base_url=url, timeout=30) as hanging_up:
                    waiting = asyncio.create_task(hanging_up.get(
                        "/v1/segments/stats", params=week, headers=leaver))
                    await until(lambda: context.report_turns.holders == 2)
                    waiting.cancel()  # the caller gives up: its connection closed
                    with pytest.raises(asyncio.CancelledError):
                        await waiting
                await until(lambda: context.report_turns.holders == 1)
                assert [record.getMessage() for record in caplog.records
                        if record.name == report_turns.__name__] == [
                    "a report's caller left while it waited; its turn given up"]

                again = asyncio.create_task(client.get("/v1/segments/stats", params=week,
                                                       headers=leaver))
                asked.append(again)
                await until(lambda: context.report_turns.holders == 2 or again.done())
                assert not again.done(), again.result().text  # waits its turn, not a 429
                held.go.set()
                answers = [await first, await again]
                assert [answer.status_code for answer in answers] == [200, 200]
                assert held.reading == 2  # the first and the asked again: not the leaver's
                assert context.report_turns.holders == 0
            finally:  # on a failure, nothing left waiting for the server's shutdown
                held.go.set()
                for task in asked:
                    task.cancel()
                await asyncio.gather(*asked, return_exceptions=True)


async def test_every_report_route_takes_turns(sqlite_url: str, kafka_bootstrap: str) -> None:
    """Each report route, asked with a credential whose report is under way, is refused
    (429): the stats and parity in the metrics service, the simulator in the router, the
    rules' analyses and the tiers' recomputation in the segmenter (one app here); and a
    caller's mistake on each, meanwhile, is a 422 at once; and each documents its 429."""
    await migrate.upgrade(sqlite_url)
    settings = Settings(database_url=sqlite_url, kafka_bootstrap_servers=kafka_bootstrap)
    await kafka.ensure_topics(settings, [topics.CONFIG_CHANGES])
    app = FastAPI()
    context = service_context.install(app, settings)
    for routes in (api.api, parity_api.api, simulator_api.api, rules_api.api, admin_api.api):
        app.include_router(routes)
    http.install(app, ready=lambda: True)
    engine = db.engine(sqlite_url)
    publisher = kafka.Publisher(settings, client_id="report-turns-tests")
    rules = live_rules.live_rule_set(RULES)
    try:
        async with metrics_context(sqlite_url) as metrics, \
                credentials.authenticating(app, sqlite_url) as keys, \
                httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                  base_url="http://service") as client:
            context.provide(metrics, simulator_api.Simulator.over(engine, settings),
                            segmenter_bootstrap.wire(
                                settings, customers=segmenter_bootstrap.customer_store(
                                    settings, db.sessions(engine)),
                                publisher=publisher, rules=rules))
            table = LiveConfig("routing_table", TEST_ROUTING_TABLE, table_file.parse)
            for live in (rules, table):  # the simulator replays under a stored table
                await live.govern(config_store.ConfigVersions(db.sessions(engine), live.name),
                                  announce=config_changes.Announcer(publisher))
            admin = await credentials.headers_of(keys, "admin")
            split = access.split_token(admin["Authorization"].removeprefix("Bearer "))
            assert split is not None

            async def ask(route: tuple[str, str], request: dict[str, Any]) -> httpx.Response:
                return await client.request(
                    route[0], route[1].format(department="public_sector"),  # the table's
                    **{**request, "headers": {**admin, **request.get("headers", {})}})

            async with context.report_turns.turn(split[0]):
                answers = {route: await ask(route, request)
                           for route, request in REPORT_ROUTES.items()}
                mistakes = [(route, (await ask(route, request)).status_code)
                            for route, request in MISTAKES]
    finally:
        await publisher.close()
        await engine.dispose()
    assert {route: (answer.status_code, answer.json().get("error"))
            for route, answer in answers.items()} == {
        route: (429, "report_in_progress") for route in REPORT_ROUTES}
    assert mistakes == [(route, 422) for route, _request in MISTAKES]
    documented = app.openapi()["paths"]
    assert [route for route in REPORT_ROUTES
            if "429" not in documented[route[1]][route[0].lower()]["responses"]] == []


async def test_a_customer_import_recomputes_the_tiers_in_its_turn(
        sqlite_url: str, kafka_bootstrap: str) -> None:
    """A customer import's recomputation of tiers (a pass over the whole customer base)
    waits for its turn while the service's only one is held, by the importing
    credential's own report here, and is not refused for it: the rows are kept at once,
    and the import answers once its turn came and the recomputation ran."""
    await migrate.upgrade(sqlite_url)
    settings = Settings(database_url=sqlite_url, kafka_bootstrap_servers=kafka_bootstrap,
                        reports_at_once=1)
    await kafka.ensure_topics(settings, [topics.CUSTOMER_EVENTS])
    app = FastAPI()
    context = service_context.install(app, settings)
    app.include_router(admin_api.api)
    http.install(app, ready=lambda: True)
    engine = db.engine(sqlite_url)
    publisher = kafka.Publisher(settings, client_id="report-turns-import-tests")
    turns = context.report_turns
    prefix = unique("turn-import")
    csv = (f"customer_id,customer_type,country\n{prefix}-1,individual,NL\n"
           f"{prefix}-2,government,SE\n").encode()
    try:
        async with credentials.authenticating(app, sqlite_url) as keys, \
                httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                  base_url="http://service") as client:
            store = segmenter_bootstrap.customer_store(settings, db.sessions(engine))
            context.provide(segmenter_bootstrap.wire(
                settings, customers=store, publisher=publisher,
                rules=live_rules.live_rule_set(RULES)))
            admin = await credentials.headers_of(keys, "admin")
            split = access.split_token(admin["Authorization"].removeprefix("Bearer "))
            assert split is not None
            async with turns.turn(split[0]):  # the admin's own report holds the only turn
                importing = asyncio.create_task(client.post(
                    "/v1/customers/import", content=csv,
                    headers={**admin, "content-type": "text/csv"}))
                await until(lambda: turns.holders == 2)  # the recomputation waits
                assert not importing.done()
                for n in (1, 2):  # the rows kept already
                    assert await store.profile_row(f"{prefix}-{n}") is not None
            answer = await importing
    finally:
        await publisher.close()
        await engine.dispose()
    assert answer.status_code == 200, answer.text
    assert answer.json()["rows_imported"] == 2
    assert answer.json()["tier_recompute"]["sizes"]  # it ran, in its turn
    assert turns.holders == 0
