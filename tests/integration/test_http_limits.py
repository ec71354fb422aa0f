"""The request body limit every service installs (services/core/http.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
from fastapi import FastAPI
from pydantic import BaseModel

from services.core import http


class Body(BaseModel):
    text: str


def small_app() -> FastAPI:
    app = FastAPI()

    @app.post("/echo")
    async def echo(body: Body) -> dict[str, int]:
        return {"length": len(body.text)}

    @app.post("/things/import")
    async def bulk(body: Body) -> dict[str, int]:
        return {"length": len(body.text)}

    http.install(app, ready=lambda: True, max_body_bytes=1000)
    return app


async def post(path: str, **request: object) -> httpx.Response:
    transport = httpx.ASGITransport(app=small_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
        return await client.post(path, **request)  # type: ignore[arg-type]


class TestBodyLimit:
    async def test_a_body_within_the_limit_passes(self) -> None:
        assert (await post("/echo", json={"text": "a" * 10})).json() == {"length": 10}

    async def test_a_declared_length_over_the_limit_is_413(self) -> None:
        response = await post("/echo", json={"text": "a" * 2000})
        assert response.status_code == 413
        assert "at most 1000 bytes" in response.json()["detail"]

    async def test_a_streamed_body_over_the_limit_is_413(self) -> None:
        async def chunks() -> AsyncIterator[bytes]:
            yield b'{"text": "'
            for _ in range(10):
                yield b"a" * 500
            yield b'"}'

        response = await post("/echo", content=chunks(),
                              headers={"content-type": "application/json"})
        assert response.status_code == 413

    async def test_bulk_imports_are_exempt(self) -> None:
        response = await post("/things/import", json={"text": "a" * 5000})
        assert response.json() == {"length": 5000}
