"""A service's app, served as serve.py serves it, logs no line a request: a request's path
and query hold customers' and tickets' ids (and may hold what a caller put there)."""

from __future__ import annotations

import asyncio
import logging

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from services.core import serve
from services.core.settings import Settings

CUSTOMER_ID, QUERY = "c-jane-doe-1980", "name=Jane%20Doe&born=1980-02-29"


def an_app() -> FastAPI:
    app = FastAPI()

    @app.get("/v1/customers/{customer_id}")
    async def customer(customer_id: str) -> dict[str, str]:
        return {"customer_id": customer_id}

    return app


async def test_a_request_s_path_and_query_are_not_logged(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # whatever LOG_LEVEL says, no request line
    server = uvicorn.Server(serve.config(an_app(), Settings(host="127.0.0.1"), port=0))
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:
            assert not serving.done(), "the server did not start"
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            answered = await client.get(f"/v1/customers/{CUSTOMER_ID}?{QUERY}")
            missing = await client.get(f"/v1/nowhere/{CUSTOMER_ID}?{QUERY}")
    finally:
        server.should_exit = True
        await serving

    assert (answered.status_code, missing.status_code) == (200, 404)
    # The server's lines: not the test's client's own (httpx logs each URL at DEBUG).
    logged = "\n".join(record.getMessage() for record in caplog.records
                       if not record.name.startswith(("httpx", "httpcore")))
    assert "Uvicorn running" in logged  # uvicorn's own lines reach the logs
    assert CUSTOMER_ID not in logged and "Jane" not in logged, logged
