"""The command-line clients wait for their report's turn (services/core/report_client.py):
the PNG report's fetches from the metrics service, and `routing simulate` from the
router's simulator, each asked while its credential's earlier report holds its turn, are
answered 429, ask again as Retry-After says, and get their report once the turn is free.
The apps are served by uvicorn on loopback, on a real store (SQLite)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from prometheus_client import REGISTRY

from services.core import access, config_store, db, http, migrate, service_context
from services.core.credentials import Credentials
from services.core.settings import Settings
from services.metrics import api, parity_api, report
from services.simulator import api as simulator_api
from services.simulator import cli as simulator_cli
from tests import credentials
from tests.conftest import TEST_ROUTING_TABLE
from tests.metrics_context import metrics_context
from tests.served import served
from tests.waits import until

# A wait of a second between two asks (the clients wait at least that).
RETRY_AFTER = 1


def refused_reports() -> float:
    return REGISTRY.get_sample_value("routing_http_auth_refused_total",
                                     {"outcome": "report_in_progress", "role": "admin"}) or 0.0


async def admin_token(keys: Credentials) -> tuple[str, str]:
    """An admin's token and its credential id."""
    _credential, token = await keys.issue(access.Role.ADMIN, None, label="tests")
    split = access.split_token(token)
    assert split is not None
    return token, split[0]


async def asked_while_the_turn_is_held(app: FastAPI, credential_id: str,
                                       client: Any) -> Any:
    """`client()`, a command-line client's blocking call, run while the credential's
    turn is held: refused at least once, then answered once the turn is let go."""
    turns = service_context.of(app).report_turns
    before = refused_reports()
    async with turns.turn(credential_id):
        asking = asyncio.create_task(asyncio.to_thread(client))
        await until(lambda: refused_reports() > before or asking.done())
        assert not asking.done(), asking.result()
    return await asking


async def test_the_png_reports_fetches_wait_for_their_turn(sqlite_url: str) -> None:
    await migrate.upgrade(sqlite_url)
    app = FastAPI()
    service_context.install(app, Settings(database_url=sqlite_url, retry_after_seconds=RETRY_AFTER))
    async with metrics_context(sqlite_url) as metrics:
        service_context.of(app).provide(metrics)
        app.include_router(api.api)
        app.include_router(parity_api.api)
        http.install(app, ready=lambda: True)
        async with credentials.authenticating(app, sqlite_url) as keys, served(app) as url:
            token, credential_id = await admin_token(keys)
            departments, segments = await asked_while_the_turn_is_held(
                app, credential_id, lambda: report.fetch(url, "7d", token=token))
            parity = await asked_while_the_turn_is_held(
                app, credential_id, lambda: report.fetch_parity(url, "7d", token=token))
    assert (departments, segments) == ([], [])  # no ticket routed: the report, empty
    assert parity["window_seconds"] == 7 * 86400


async def test_routing_simulate_waits_for_its_turn(
        sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    await migrate.upgrade(sqlite_url)
    engine = db.engine(sqlite_url)
    out = tmp_path / "simulation.png"
    end = datetime.now(UTC).replace(microsecond=0)
    start = end - timedelta(hours=1)
    try:
        versions = config_store.ConfigVersions(db.sessions(engine),
                                               config_store.ROUTING_TABLE)
        table = TEST_ROUTING_TABLE.read_text(encoding="utf-8")
        await versions.put_in_force(config_store.Candidate(table, "tests", "tests"))
        app = FastAPI()
        service_context.install(app, Settings(database_url=sqlite_url,
                                              retry_after_seconds=RETRY_AFTER))
        service_context.of(app).provide(
            simulator_api.Simulator.over(engine, Settings(protected_group_minimum_size=1)))
        app.include_router(simulator_api.api)
        http.install(app, ready=lambda: True)
        async with credentials.authenticating(app, sqlite_url) as keys, served(app) as url:
            token, credential_id = await admin_token(keys)
            monkeypatch.setenv("API_TOKEN", token)  # the command's credential (Settings)
            await asked_while_the_turn_is_held(app, credential_id, lambda: simulator_cli.simulate(
                start.isoformat(), end.isoformat(), out=out, url=url))
    finally:
        await engine.dispose()
    assert out.read_bytes().startswith(b"\x89PNG")
