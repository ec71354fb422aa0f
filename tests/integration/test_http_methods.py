"""Which route answers a path, as OpenAPI says (services/core/allowed_methods.py): a
concrete path comes before a templated one that also matches it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

import httpx
import pytest
from fastapi import APIRouter, FastAPI, Path

from services.core import http

ThingId = Annotated[str, Path(pattern=r"^[0-9a-f]{12}$")]


def small_app() -> FastAPI:
    app = FastAPI()
    things = APIRouter(prefix="/things")

    @things.get("/me")
    async def mine() -> dict[str, str]:
        return {"thing": "mine"}

    @things.get("/{thing_id}")
    async def one(thing_id: ThingId) -> dict[str, str]:
        return {"thing": thing_id}

    @things.delete("/{thing_id}")
    async def remove(thing_id: ThingId) -> dict[str, str]:
        return {"removed": thing_id}

    app.include_router(things)
    http.install(app, ready=lambda: True)
    return app


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=small_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
        yield client


class TestConcretePathsFirst:
    async def test_a_method_the_concrete_path_lacks_is_405_naming_its_methods(
            self, client: httpx.AsyncClient) -> None:
        for method in ("DELETE", "PATCH"):
            response = await client.request(method, "/things/me")
            assert response.status_code == 405, response.text
            assert response.json() == {"error": "method_not_allowed",
                                       "detail": f"/things/me takes GET, not {method}"}
            assert response.headers["allow"] == "GET"

    async def test_the_concrete_path_and_the_templated_one_still_answer(
            self, client: httpx.AsyncClient) -> None:
        assert (await client.get("/things/me")).json() == {"thing": "mine"}
        assert (await client.delete("/things/0123456789ab")).json() == {
            "removed": "0123456789ab"}
        wrong_method = await client.patch("/things/0123456789ab")
        assert wrong_method.headers["allow"] == "DELETE, GET"
        assert wrong_method.json()["detail"] == "/things/{thing_id} takes DELETE or GET, not PATCH"

    async def test_the_schema_documents_only_the_real_routes(
            self, client: httpx.AsyncClient) -> None:
        paths = (await client.get("/openapi.json")).json()["paths"]
        assert set(paths["/things/me"]) == {"get"}
        assert set(paths["/things/{thing_id}"]) == {"get", "delete"}
