"""Two transactions that deadlock on a real PostgreSQL: the one the server rolls back is
a conflict (`db.is_conflict`), neither the record's fault nor an outage, so a stage
retries its batch (`faults.Fault.TRANSIENT`) and an API request that met it is answered
503 with Retry-After, not 500."""

from __future__ import annotations

import asyncio

import httpx
from fastapi import FastAPI
from sqlalchemy import NullPool, text
from sqlalchemy.ext.asyncio import create_async_engine

from devtools.postgres import LocalPostgres
from services.core import db, faults, http, service_context
from services.core.settings import Settings
from tests.databases import ExternalPostgres, fresh_postgres_database


async def deadlocked(server: LocalPostgres | ExternalPostgres) -> Exception:
    """What the transaction PostgreSQL picks to end a deadlock raises: each of two
    transactions holds one row and asks for the other's."""
    async with fresh_postgres_database(server.url) as url:
        engine = create_async_engine(url, poolclass=NullPool)
        try:
            async with engine.begin() as connection:
                await connection.execute(text("CREATE TABLE rows (id int PRIMARY KEY, n int)"))
                await connection.execute(text("INSERT INTO rows VALUES (1, 0), (2, 0)"))
            held = {1: asyncio.Event(), 2: asyncio.Event()}

            async def take(mine: int, theirs: int) -> None:
                async with engine.begin() as connection:
                    await connection.execute(
                        text("UPDATE rows SET n = n + 1 WHERE id = :id"), {"id": mine})
                    held[mine].set()
                    await held[theirs].wait()
                    await connection.execute(
                        text("UPDATE rows SET n = n + 1 WHERE id = :id"), {"id": theirs})

            outcomes = await asyncio.wait_for(
                asyncio.gather(take(1, 2), take(2, 1), return_exceptions=True), 60)
        finally:
            await engine.dispose()
    failed = [outcome for outcome in outcomes if isinstance(outcome, Exception)]
    assert len(failed) == 1, outcomes  # the other went through once this one ended
    return failed[0]


async def test_a_deadlock_is_a_conflict_a_stage_retries(
        postgres_server: LocalPostgres | ExternalPostgres) -> None:
    error = await deadlocked(postgres_server)
    assert db.is_conflict(error)
    assert not db.is_outage(error)
    assert faults.classify(error) is faults.Fault.TRANSIENT


async def test_a_request_that_met_a_deadlock_is_told_to_retry(
        postgres_server: LocalPostgres | ExternalPostgres) -> None:
    error = await deadlocked(postgres_server)
    app = FastAPI()
    http.install(app, ready=lambda: True)
    service_context.install(app, Settings())

    @app.post("/v1/things")
    async def write() -> None:
        raise error

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://test") as client:
        answer = await client.post("/v1/things")
    assert answer.status_code == 503
    assert answer.headers["Retry-After"] == str(Settings().retry_after_seconds)
    assert answer.json() == {
        "error": "unavailable",
        "detail": "the SQL store turned the request back for a conflict with another;"
                  " retry later"}
