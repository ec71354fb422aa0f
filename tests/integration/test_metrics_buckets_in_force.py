"""The metrics service's response-time buckets follow the routing table in force in the
store (an upload through the router's API), not only the file: a target the file lacks
becomes a bucket edge at start (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.core import config_store
from services.core.settings import PROJECT_ROOT, Settings
from services.metrics import bootstrap, exporter, service_levels

FILE = PROJECT_ROOT / "config" / "routing.yaml"
UPLOADED_TARGET = 37 * 60.0  # 37m: in no shipped table
# A table the router takes (the metrics service reads it with the router's parser).
ROUTES = ("fallback_department: customer_care\n"
          "routes: [{segment: government, department: public_sector}]\n")


@pytest.fixture
def default_buckets() -> Iterator[None]:
    yield
    exporter.use_response_buckets(service_levels.DEFAULT_RESPONSE_BUCKETS)


async def test_a_target_of_the_version_in_force_is_a_bucket_edge(
        database_url: str, sessions: async_sessionmaker[AsyncSession],
        default_buckets: None) -> None:
    await config_store.ConfigVersions(sessions, config_store.ROUTING_TABLE).put_in_force(
        config_store.Candidate(text="version: uploaded\n"
                                    "defaults: {first_response_target: 37m}\n" + ROUTES,
                               version="uploaded", author="test"))
    settings = Settings(database_url=database_url, routing_table_file=FILE)
    async with bootstrap.connect(settings):
        assert UPLOADED_TARGET in exporter.response_buckets


async def test_without_a_version_in_force_the_file_gives_them(
        database_url: str, default_buckets: None, tmp_path: Path) -> None:
    table = tmp_path / "routing.yaml"
    table.write_text("version: file\ndefaults: {first_response_target: 37m}\n" + ROUTES,
                     encoding="utf-8")
    async with bootstrap.connect(Settings(database_url=database_url,
                                          routing_table_file=table)):
        assert UPLOADED_TARGET in exporter.response_buckets
