"""The request body limit every service installs (services/core/body_limit.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
import pytest
from fastapi import FastAPI, Request
from pydantic import BaseModel

from services.core import auth, http
from tests import credentials

LIMIT = 1000


class Body(BaseModel):
    text: str


@dataclass
class Handled:
    """What the app's handlers were given: a body over the limit must reach none."""

    configurations: list[str] = field(default_factory=list)


def small_app(handled: Handled) -> FastAPI:
    app = FastAPI()

    @app.post("/echo")
    async def echo(body: Body) -> dict[str, int]:
        return {"length": len(body.text)}

    @app.put("/configuration")
    async def configuration(text: http.YamlText) -> dict[str, int]:
        handled.configurations.append(text)
        return {"length": len(text)}

    async def streamed(request: Request) -> dict[str, int]:
        length = 0
        async for chunk in request.stream():
            length += len(chunk)
        return {"length": length}

    app.add_api_route("/things/import", streamed, methods=["POST"],
                      dependencies=auth.ADMIN_ONLY)
    app.add_api_route("/things/import", streamed, methods=["PUT"])
    app.add_api_route("/other/import", streamed, methods=["POST"])
    http.install(app, ready=lambda: True, max_body_bytes=LIMIT,
                 streamed_uploads={("POST", "/things/import")})
    return app


@pytest.fixture
def handled() -> Handled:
    return Handled()


@pytest.fixture
async def client(handled: Handled, sqlite_url: str) -> AsyncIterator[httpx.AsyncClient]:
    app = small_app(handled)
    async with credentials.authenticating(app, sqlite_url) as store:
        app.state.admin = await credentials.headers_of(store, "admin")
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
            client.headers.update(app.state.admin)
            yield client


class Chunks:
    """A body sent chunked (no Content-Length), counting what the server pulled of it."""

    def __init__(self, count: int, size: int = 500, *, prefix: bytes = b"",
                 suffix: bytes = b"") -> None:
        self.count, self.size, self.prefix, self.suffix = count, size, prefix, suffix
        self.pulled = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for part in [self.prefix, *(b"a" * self.size for _ in range(self.count)), self.suffix]:
            self.pulled += len(part)
            yield part


class TestBodyLimit:
    async def test_a_body_within_the_limit_passes(self, client: httpx.AsyncClient) -> None:
        assert (await client.post("/echo", json={"text": "a" * 10})).json() == {"length": 10}

    async def test_a_declared_length_over_the_limit_is_413(
            self, client: httpx.AsyncClient) -> None:
        response = await client.post("/echo", json={"text": "a" * 2000})
        assert response.status_code == 413
        assert f"at most {LIMIT} bytes" in response.json()["detail"]

    async def test_a_chunked_body_over_the_limit_is_413(
            self, client: httpx.AsyncClient) -> None:
        body = Chunks(10, prefix=b'{"text": "', suffix=b'"}')
        response = await client.post("/echo", content=body.__aiter__(),
                                     headers={"content-type": "application/json"})
        assert response.status_code == 413

    async def test_a_chunked_body_over_the_limit_is_never_processed_in_part(
            self, client: httpx.AsyncClient, handled: Handled) -> None:
        # Any part of a YAML file may be a valid YAML file: the cut must not be taken in.
        response = await client.put("/configuration", content=Chunks(10).__aiter__(),
                                    headers={"content-type": "application/yaml"})
        assert response.status_code == 413
        assert f"at most {LIMIT} bytes" in response.json()["detail"]
        assert handled.configurations == []

    async def test_a_chunked_body_within_the_limit_is_processed_whole(
            self, client: httpx.AsyncClient, handled: Handled) -> None:
        response = await client.put("/configuration", content=Chunks(2).__aiter__(),
                                    headers={"content-type": "application/yaml"})
        assert response.json() == {"length": 1000}
        assert handled.configurations == ["a" * 1000]


class TestStreamedUploads:
    async def test_the_upload_route_takes_any_size_from_an_authenticated_caller(
            self, client: httpx.AsyncClient) -> None:
        response = await client.post("/things/import", content=b"a" * 5000)
        assert response.json() == {"length": 5000}
        chunked = await client.post("/things/import", content=Chunks(20).__aiter__())
        assert chunked.json() == {"length": 10_000}

    @pytest.mark.parametrize(("method", "path"), [("PUT", "/things/import"),
                                                  ("POST", "/other/import")])
    async def test_only_that_method_and_path_are_exempt(
            self, client: httpx.AsyncClient, method: str, path: str) -> None:
        response = await client.request(method, path, content=b"a" * 5000)
        assert response.status_code == 413
        chunked = await client.request(method, path, content=Chunks(20).__aiter__())
        assert chunked.status_code == 413

    async def test_an_anonymous_upload_is_refused_before_its_body_is_read(
            self, client: httpx.AsyncClient) -> None:
        body = Chunks(2000)  # 1 MB
        response = await client.post("/things/import", content=body.__aiter__(),
                                     headers={"Authorization": ""})
        assert response.status_code == 401
        assert body.pulled <= 500

    async def test_a_compressed_upload_is_refused_before_its_body_is_read(
            self, client: httpx.AsyncClient) -> None:
        """Exempt from the size limit, not from the encoding's: an import would read the
        inflated rows as text."""
        body = Chunks(2000)
        response = await client.post("/things/import", content=body.__aiter__(),
                                     headers={"Content-Encoding": "gzip"})
        assert response.status_code == 415
        assert response.json()["fields"][0]["field"] == "header.Content-Encoding"
        assert body.pulled <= 500
