"""Two router instances (in-process apps) on one store and one broker converge on a
routing table put in force on either, within seconds and without a restart: by the
announcement on Kafka, and, when an announcement is missed, by the periodic store check.
A router restarted after a bad edit to its file serves the table in force in the store."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from services.core import config_store, db, live_config
from services.core.settings import Settings
from services.router import app as router_app
from services.router import table_file
from services.segmenter import app as segmenter_app
from tests import credentials
from tests.conftest import TEST_ROUTING_TABLE, unique
from tests.routing_tables import routing_table_with


@contextlib.asynccontextmanager
async def running(app: FastAPI, token: str) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://instance",
                                     headers=credentials.bearer(token)) as client:
            yield client


async def converged(client: httpx.AsyncClient, path: str, version: str) -> bool:
    """Whether the instance serves `version` within 15 s (polled, no timing asserted)."""
    for _ in range(150):
        if (await client.get(path)).json()["version"] == version:
            return True
        await asyncio.sleep(0.1)
    return False


def instance(settings: Settings, number: int) -> Settings:
    return settings.model_copy(update={"instance_id": f"fleet-{number}"})


@pytest.fixture
def fleet_settings(kafka_bootstrap: str, database_url: str, tmp_path: Path) -> Settings:
    return Settings(kafka_bootstrap_servers=kafka_bootstrap, database_url=database_url,
                    routing_table_file=TEST_ROUTING_TABLE, log_format="text",
                    tier_recompute_interval_seconds=0)


class TestRoutersConverge:
    async def test_a_table_put_on_one_router_is_served_by_the_other_on_announcement(
            self, fleet_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(live_config, "CHECK_SECONDS", 3600.0)  # the announcement only
        token = await credentials.issue_token(fleet_settings.database_url, "admin")
        table = routing_table_with(version=unique("fleet"))
        async with running(router_app.create_app(instance(fleet_settings, 1)), token) as one, \
                running(router_app.create_app(instance(fleet_settings, 2)), token) as two:
            put = await one.put("/v1/routing-table", content=table.encode(),
                                params={"comment": "fleet test"},
                                headers={"content-type": "application/yaml"})
            assert put.status_code == 200, put.text
            assert await converged(two, "/v1/routing-table", put.json()["version"])

            seed_id = (await two.get("/v1/routing-table/versions")).json()[-1]["version_id"]
            back = await two.post(f"/v1/routing-table/versions/{seed_id}/rollback",
                                  json={"comment": "back"})
            assert back.status_code == 200, back.text
            assert await converged(one, "/v1/routing-table", back.json()["version"]["version"])

    async def test_a_missed_announcement_is_caught_by_the_store_check(
            self, fleet_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(live_config, "CHECK_SECONDS", 0.5)
        token = await credentials.issue_token(fleet_settings.database_url, "admin")
        table = routing_table_with(version=unique("missed"))
        async with running(router_app.create_app(instance(fleet_settings, 1)), token) as one:
            # Put in force straight in the store, as an instance whose announcement was
            # lost would leave it: no record on Kafka.
            engine = db.engine(fleet_settings.database_url)
            try:
                version, changed = await config_store.ConfigVersions(
                    db.sessions(engine), config_store.ROUTING_TABLE).put_in_force(
                    config_store.Candidate(text=table, version=table_file.parse(
                        table, "fleet").version, author="tests", comment="unannounced"))
            finally:
                await engine.dispose()
            assert changed
            assert await converged(one, "/v1/routing-table", version.version)
            assert (await one.get("/v1/routing-table")).json()["version_id"] == \
                version.version_id


class TestSegmentersConverge:
    async def test_rules_put_on_one_segmenter_are_served_by_the_other(
            self, fleet_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(live_config, "CHECK_SECONDS", 3600.0)
        token = await credentials.issue_token(fleet_settings.database_url, "admin")
        rules = fleet_settings.segment_rules_file.read_text().replace(
            "version: demo-2", f"version: {unique('fleet')}")
        async with running(segmenter_app.create_app(instance(fleet_settings, 1)),
                           token) as one, \
                running(segmenter_app.create_app(instance(fleet_settings, 2)),
                        token) as two:
            put = await one.put("/v1/segment-rules", content=rules.encode(),
                                headers={"content-type": "application/yaml"})
            assert put.status_code == 200, put.text
            assert await converged(two, "/v1/segment-rules", put.json()["version"])


class TestRestart:
    async def test_a_router_restarted_with_a_bad_table_file_serves_the_stored_table(
            self, fleet_settings: Settings, tmp_path: Path) -> None:
        file = tmp_path / "routing.yaml"
        shutil.copyfile(TEST_ROUTING_TABLE, file)
        settings = instance(fleet_settings.model_copy(update={"routing_table_file": file}), 1)
        token = await credentials.issue_token(settings.database_url, "admin")
        async with running(router_app.create_app(settings), token) as first:
            seeded = (await first.get("/v1/routing-table")).json()
        file.write_text(routing_table_with(priority_aging="soon"), encoding="utf-8")
        async with running(router_app.create_app(settings), token) as restarted:
            served = (await restarted.get("/v1/routing-table")).json()
        assert (served["version"], served["version_id"]) == (seeded["version"],
                                                             seeded["version_id"])
        assert served["last_rejection"]["source"] == str(file.resolve())
        assert f"{file.resolve()}:" in served["last_rejection"]["error"]
