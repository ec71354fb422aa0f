"""A PostgreSQL connection that goes half-open (the server, or a firewall between, lost
it without a word) holds no caller past `DATABASE_STATEMENT_TIMEOUT_SECONDS`: the call
fails as an outage, and the next one gets a connection that answers.

The half-open connection is made by a loopback relay between the engine and a real
PostgreSQL server: told to, it keeps the connections it relays open and takes what
either side sends, and delivers nothing more. Connections made after that are relayed
as before, as when the server is up and only the old connections were lost."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.engine import make_url

from devtools.postgres import LocalPostgres
from services.core import db, http, migrate, service_context
from services.core.settings import Settings
from services.router.store import RoutedTickets
from tests.databases import ExternalPostgres, fresh_postgres_database

LIMIT_SECONDS = 1.0
# Only so that a test that would hang fails instead; no duration is asserted.
HANG_GUARD_SECONDS = 60.0


class Relay:
    """Relays loopback TCP connections to `port`; `go_silent` makes the ones open now
    half-open."""

    def __init__(self, port: int) -> None:
        self._port = port
        self._open: list[asyncio.Event] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    def go_silent(self) -> None:
        for flowing in self._open:
            flowing.clear()

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _relay(self, client_in: asyncio.StreamReader,
                     client_out: asyncio.StreamWriter) -> None:
        server_in, server_out = await asyncio.open_connection("127.0.0.1", self._port)
        flowing = asyncio.Event()
        flowing.set()
        self._open.append(flowing)
        for source, sink in ((client_in, server_out), (server_in, client_out)):
            task = asyncio.create_task(self._pump(source, sink, flowing))
            self._tasks.add(task)

    @staticmethod
    async def _pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter,
                    flowing: asyncio.Event) -> None:
        try:
            while data := await source.read(65536):
                await flowing.wait()
                sink.write(data)
        finally:
            sink.close()


@pytest.fixture
async def relayed_database_url(
        postgres_server: LocalPostgres | ExternalPostgres) -> AsyncIterator[tuple[str, Relay]]:
    """A migrated PostgreSQL database, reached through a relay."""
    async with fresh_postgres_database(postgres_server.url) as url:
        await migrate.upgrade(url)
        relay = Relay(make_url(url).port or 5432)
        port = await relay.start()
        try:
            yield make_url(url).set(port=port).render_as_string(hide_password=False), relay
        finally:
            await relay.close()


@contextlib.asynccontextmanager
async def not_hanging() -> AsyncIterator[None]:
    try:
        async with asyncio.timeout(HANG_GUARD_SECONDS):
            yield
    except TimeoutError:
        pytest.fail(f"still waiting after {HANG_GUARD_SECONDS} s")


def service_settings(database_url: str) -> Settings:
    return Settings(database_url=database_url,
                    database_statement_timeout_seconds=LIMIT_SECONDS)


class TestHalfOpenConnection:
    async def test_a_pooled_connection_gone_half_open_fails_as_an_outage(
            self, relayed_database_url: tuple[str, Relay]) -> None:
        url, relay = relayed_database_url
        engine = db.store_engine(service_settings(url))
        routed = RoutedTickets(db.sessions(engine))
        try:
            assert await routed.get("t-1") is None  # a connection made and pooled
            relay.go_silent()
            async with not_hanging():
                with pytest.raises(db.STORE_ERRORS) as failed:
                    await routed.get("t-1")
            assert db.is_outage(failed.value)
            async with not_hanging():
                assert await routed.get("t-1") is None  # a new connection
        finally:
            await engine.dispose()

    async def test_a_transaction_whose_connection_goes_half_open_fails_as_an_outage(
            self, relayed_database_url: tuple[str, Relay]) -> None:
        url, relay = relayed_database_url
        engine = db.store_engine(service_settings(url))
        sessions = db.sessions(engine)
        routed = RoutedTickets(sessions)
        try:
            async with not_hanging():
                with pytest.raises(db.STORE_ERRORS) as failed:
                    async with sessions.begin() as session:
                        await session.execute(text("SELECT 1"))
                        relay.go_silent()
                        await session.execute(text("SELECT 2"))
            assert db.is_outage(failed.value)
            async with not_hanging():
                assert await routed.get("t-1") is None
        finally:
            await engine.dispose()


class TestAnApiCall:
    async def test_a_request_whose_connection_went_half_open_is_told_to_retry(
            self, relayed_database_url: tuple[str, Relay]) -> None:
        url, relay = relayed_database_url
        settings = service_settings(url)
        engine = db.store_engine(settings)
        routed = RoutedTickets(db.sessions(engine))
        app = FastAPI()
        http.install(app, ready=lambda: True)
        service_context.install(app, settings)

        @app.get("/v1/tickets/{ticket_id}")
        async def ticket(ticket_id: str) -> dict[str, bool]:
            return {"found": await routed.get(ticket_id) is not None}

        try:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                         base_url="http://test") as client:
                assert (await client.get("/v1/tickets/t-1")).json() == {"found": False}
                relay.go_silent()
                async with not_hanging():
                    answer = await client.get("/v1/tickets/t-1")
                assert answer.status_code == 503
                assert answer.headers["Retry-After"] == str(settings.retry_after_seconds)
                assert answer.json()["error"] == "unavailable"
                async with not_hanging():  # a new connection
                    assert (await client.get("/v1/tickets/t-1")).status_code == 200
        finally:
            await engine.dispose()
