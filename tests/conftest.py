"""Fixtures shared by the integration and end-to-end tests: a real Kafka broker (started
here unless KAFKA_BOOTSTRAP_SERVERS names one), real services as processes, and clients
built fresh for each test (own consumer group, own customer and ticket ids)."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer

from devtools import ports, processes
from devtools.kafka_broker import LocalKafka
from services.core import envelope
from services.core.settings import PROJECT_ROOT, Settings
from tests import credentials

pytest_plugins = ["tests.databases", "tests.service_starts", "tests.webhooks_receiver"]


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    configured = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if configured:
        yield configured
        return
    with LocalKafka(tmp_path_factory.mktemp("kafka")).running() as bootstrap:
        yield bootstrap


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"


@pytest.fixture
def settings(kafka_bootstrap: str, sqlite_url: str) -> Settings:
    return Settings(kafka_bootstrap_servers=kafka_bootstrap, database_url=sqlite_url,
                    log_format="text")


TEST_ROUTING_TABLE = Path(__file__).with_name("routing.yaml")


def department_lanes(*departments: str) -> list[str]:
    """Every lane topic of the departments (tickets go to the lane of their priority)."""
    from services.router import priority

    return [topic for department in departments for topic in priority.lane_topics(department)]


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def readable(batch: Mapping[Any, list[Any]]) -> Iterator[tuple[envelope.Event, Any]]:
    """The batch's records that are events, as (event, record); others are skipped."""
    for records in batch.values():
        for record in records:
            try:
                yield envelope.from_record(record.headers, record.value), record
            except envelope.EnvelopeError:
                continue


async def read_topic(bootstrap: str, *topic_names: str, until: int, within: float = 20.0,
                     settle: float = 1.0, keep: object = None,
                     isolation_level: str = "read_committed",
                     ) -> list[tuple[envelope.Event, object]]:
    """Read topics from the start with a fresh group (read_committed unless told) until
    `until` records pass `keep(event)` and `settle` more seconds bring no more (so
    duplicates show), or `within` seconds; returns (event, record) pairs."""
    import asyncio

    consumer = AIOKafkaConsumer(*topic_names, bootstrap_servers=bootstrap,
                                group_id=unique("reader"), auto_offset_reset="earliest",
                                enable_auto_commit=False, isolation_level=isolation_level)
    found: list[tuple[envelope.Event, object]] = []
    try:
        await consumer.start()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while loop.time() < deadline:
            if len(found) >= until:
                deadline = min(deadline, loop.time() + settle)
            batch = await consumer.getmany(timeout_ms=200)
            for event, record in readable(batch):
                if keep is None or keep(event):  # type: ignore[operator]
                    found.append((event, record))
    finally:
        await consumer.stop()
    return found


class Pipeline:
    """The three services as processes against one broker and one store."""

    def __init__(self, bootstrap: str, database_url: str, logs: Path,
                 extra_env: dict[str, str] | None = None) -> None:
        service_ports = ports.free_ports_by_name(processes.SERVICES)
        self.env = processes.service_env(
            bootstrap=bootstrap, database_url=database_url, ports=service_ports,
            extra={"LOG_FORMAT": "json", "ROUTING_TABLE_FILE": str(TEST_ROUTING_TABLE),
                   **(extra_env or {})})
        self.bootstrap = bootstrap
        self.database_url = database_url
        self._tokens: dict[tuple[str, str | None], str] = {}
        self.services = {
            name: processes.ServiceProcess(name, service_ports[name], self.env,
                                           logs / f"{name}.log")
            for name in processes.SERVICES
        }

    def url(self, name: str) -> str:
        return self.services[name].url

    def headers(self, role: str = "platform", subject: str | None = "tests") -> dict[str, str]:
        """Authorization headers of a credential of `role` (issued once per pipeline);
        admins have no subject."""
        subject = None if role == "admin" else subject
        if (role, subject) not in self._tokens:
            self._tokens[role, subject] = credentials.issue_token_blocking(
                self.database_url, role, subject)
        return credentials.bearer(self._tokens[role, subject])

    @property
    def issued_tokens(self) -> list[str]:
        return list(self._tokens.values())

    def start(self) -> None:
        for service in self.services.values():
            service.start()
        for service in self.services.values():
            service.wait_ready(timeout=90)

    def stop(self) -> None:
        for service in self.services.values():
            service.stop()

    def logs(self) -> str:
        return "\n".join(s.log_file.read_text(errors="replace")
                         for s in self.services.values() if s.log_file.exists())


@contextlib.contextmanager
def demo_pipeline(kafka_bootstrap: str, home: Path, *, customers: int = 300,
                  table: str | None = None,
                  extra_env: dict[str, str] | None = None) -> Iterator[Pipeline]:
    """The whole pipeline running on a SQLite store with `customers` demo customers, in
    `home`; routing by `table` (YAML text, written to routing.yaml there) if given, else
    by the file ROUTING_TABLE_FILE of `extra_env` names, else by the tests' table."""
    import asyncio

    from devtools import demo

    if table is not None and "ROUTING_TABLE_FILE" in (extra_env or {}):
        raise ValueError("demo_pipeline: give the routing table as `table` (its text) or as"
                         " ROUTING_TABLE_FILE in `extra_env` (its file), not both")
    database_url = f"sqlite+aiosqlite:///{home / 'store.db'}"
    asyncio.run(demo.seed_if_empty(database_url, count=customers))
    env = dict(extra_env or {})
    if table is not None:
        table_file = home / "routing.yaml"
        table_file.write_text(table, encoding="utf-8")
        env["ROUTING_TABLE_FILE"] = str(table_file)
    running = Pipeline(kafka_bootstrap, database_url, home / "logs", env)
    running.start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def pipeline(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    """The whole pipeline, with the demo customer store, for one test module."""
    with demo_pipeline(kafka_bootstrap, tmp_path_factory.mktemp("pipeline")) as running:
        yield running


@pytest.fixture(scope="session")
def project_root() -> Path:
    return PROJECT_ROOT


@pytest.fixture
async def http_client() -> AsyncIterator[object]:
    import httpx

    async with httpx.AsyncClient(timeout=10.0) as client:
        yield client
