"""The dead-letter HTTP API: list, page and replay as an admin; bad input names the
field; an unreachable broker is a 503 with Retry-After."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from fastapi import FastAPI

from devtools import ports
from services.core import http, service_context
from services.core.settings import Settings
from services.router import dead_letters_api
from tests import credentials
from tests.integration.dead_letters.dead_lettering import some_dead_letters


def api_app(settings: Settings) -> FastAPI:
    app = FastAPI()
    app.include_router(dead_letters_api.api)
    http.install(app, ready=lambda: True)
    service_context.install(app, settings)
    return app


async def call(settings: Settings, method: str, path: str, **options: Any) -> httpx.Response:
    """The dead-letter API called as an admin."""
    app = api_app(settings)
    async with credentials.authenticating(app, settings.database_url) as store, \
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test",
                              headers=await credentials.headers_of(store, "admin"),
                              timeout=60) as client:
        return await client.request(method, path, **options)


class TestHttp:
    async def test_list_pages_and_replays(
            self, settings: Settings, producer: AIOKafkaProducer, source_topic: str) -> None:
        made = await some_dead_letters(producer, source_topic, 3)
        page = await call(settings, "GET", "/v1/dead-letters",
                          params={"source_topic": source_topic, "limit": 2})
        assert page.status_code == 200
        assert len(page.json()["dead_letters"]) == 2
        assert all("value" not in item for item in page.json()["dead_letters"])
        rest = await call(settings, "GET", "/v1/dead-letters",
                          params={"source_topic": source_topic, "since": page.json()["next"],
                                  "include_value": "true"})
        assert [item["value"] for item in rest.json()["dead_letters"]] == [
            made[rest.json()["dead_letters"][0]["id"]][1].decode()]
        assert rest.json()["next"] is None

        body = {"source_topic": source_topic}
        replayed = await call(settings, "POST", "/v1/dead-letters/replay", json=body)
        repeated = await call(settings, "POST", "/v1/dead-letters/replay", json=body)
        assert replayed.json() == {"replayed": 3, "skipped_already_replayed": 0,
                                   "not_found": 0, "unreplayable": 0}
        assert repeated.json()["skipped_already_replayed"] == 3

    @pytest.mark.parametrize(("method", "path", "options", "field"), [
        ("GET", "/v1/dead-letters", {"params": {"limit": 1001}}, "query.limit"),
        ("GET", "/v1/dead-letters", {"params": {"since": "soon"}}, "query.since"),
        ("GET", "/v1/dead-letters", {"params": {"include_value": "perhaps"}},
         "query.include_value"),
        ("POST", "/v1/dead-letters/replay", {"json": {}}, "body.ids"),
        ("POST", "/v1/dead-letters/replay", {"json": {"ids": ["0:1"], "error_class": "E"}},
         "body.ids"),
        ("POST", "/v1/dead-letters/replay", {"json": {"ids": ["0:1", "x"]}}, "body.ids.1"),
        ("POST", "/v1/dead-letters/replay", {"json": {"error_class": "E", "everything": 1}},
         "body.everything"),
    ])
    async def test_bad_input_names_the_field(self, settings: Settings, method: str, path: str,
                                             options: dict[str, Any], field: str) -> None:
        response = await call(settings, method, path, **options)
        assert response.status_code == 422
        assert response.json()["error"] == "invalid_request"
        assert [f["field"] for f in response.json()["fields"]] == [field]

    @pytest.mark.parametrize(("method", "path", "options"), [
        ("GET", "/v1/dead-letters", {}),
        ("POST", "/v1/dead-letters/replay", {"json": {"ids": ["0:1"]}}),
    ])
    async def test_kafka_unreachable_is_a_503_with_retry_after(
            self, method: str, path: str, options: dict[str, Any], sqlite_url: str) -> None:
        nowhere = Settings(kafka_bootstrap_servers=f"127.0.0.1:{ports.free_port()}",
                           database_url=sqlite_url, retry_after_seconds=7)
        response = await call(nowhere, method, path, **options)
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "7"
        assert response.json()["error"] == "unavailable"
