"""The segmenter service as a process, once per backend (SQLite, PostgreSQL) for the
whole folder: seeding its 300 customers and starting it is the slow part.

The folder's files run in name order on the same service, and rely on it as the tests of
one module did: `test_segment_and_tier.py` counts the seeded tiers before any other test
adds a customer."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from devtools import demo, ports, processes
from services.core.settings import PROJECT_ROOT
from tests import credentials
from tests.databases import BACKENDS, fresh_postgres_database
from tests.integration.segmenter_service.service import Segmenter


@pytest.fixture(scope="package", params=BACKENDS)
async def segmenter(request: pytest.FixtureRequest, kafka_bootstrap: str,
                    tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Segmenter]:
    home = tmp_path_factory.mktemp(f"segmenter-{request.param}")
    rules_file = home / "segments.yaml"
    shutil.copy(PROJECT_ROOT / "config" / "segments.yaml", rules_file)
    async with _database(request, home) as database_url:
        await demo.seed_if_empty(database_url, count=300)
        service_ports = ports.free_ports_by_name(processes.SERVICES)
        env = processes.service_env(bootstrap=kafka_bootstrap, database_url=database_url,
                                    ports=service_ports,
                                    extra={"SEGMENT_RULES_FILE": str(rules_file),
                                           "CUSTOMER_CACHE_TTL_SECONDS": "600"})
        process = processes.ServiceProcess("segmenter", service_ports["segmenter"], env,
                                           home / "segmenter.log")
        process.start()
        try:
            await asyncio.to_thread(process.wait_ready, 90)
            yield Segmenter(process, rules_file, database_url)
        finally:
            process.stop()


@contextlib.asynccontextmanager
async def _database(request: pytest.FixtureRequest, home: Path) -> AsyncIterator[str]:
    """A fresh database of the module's backend."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{home / 'store.db'}"
        return
    server = request.getfixturevalue("postgres_server")
    async with fresh_postgres_database(server.url) as url:
        yield url


@pytest.fixture
async def client(segmenter: Segmenter) -> AsyncIterator[httpx.AsyncClient]:
    """The segmenter's API, as an admin."""
    token = await credentials.issue_token(segmenter.database_url, "admin")
    async with httpx.AsyncClient(base_url=segmenter.url, timeout=30,
                                 headers=credentials.bearer(token)) as http_client:
        yield http_client
