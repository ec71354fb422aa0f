"""Each service's OpenAPI declares what its probes answer, the 503s too: `/healthz`'s
while the process exits for a stage that ended for good, `/readyz`'s while it cannot do
its work. They declared a 200 of any shape alone, so that a client generated from the
document, or a fuzzer, took those 503s for undocumented answers."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Any

import httpx
import jsonschema_rs
import pytest
from fastapi import FastAPI

from services.core import health
from services.core.settings import Settings
from services.metrics import app as metrics_app
from services.router import app as router_app
from services.segmenter import app as segmenter_app

APPS = {"router": router_app, "segmenter": segmenter_app, "metrics": metrics_app}


@functools.cache
def document_of(service: str) -> dict[str, Any]:
    document: dict[str, Any] = APPS[service].create_app(Settings()).openapi()
    return document


def declared(service: str, path: str, status: str) -> dict[str, Any]:
    responses: dict[str, Any] = document_of(service)["paths"][path]["get"]["responses"]
    assert status in responses, (service, path, sorted(responses))
    return dict(responses[status])


def answer(path: str, *, ready: bool = True, down: Callable[[], list[str]] = list,
           ended: Callable[[], list[str]] = list) -> httpx.Response:
    """What the probe at `path` answers, given what is ready, down and ended."""
    app = FastAPI()
    app.include_router(health.routes(ready=lambda: ready, down=down, ended=ended))

    async def get() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
            return await client.get(path)

    return asyncio.run(get())


def conforms(service: str, response: httpx.Response, path: str) -> None:
    """The answer's status is declared for `path` in the service's document, and its body
    is valid by the schema declared for it there."""
    content = declared(service, path, str(response.status_code))["content"]
    schema = {**content["application/json"]["schema"],
              "components": document_of(service)["components"]}
    jsonschema_rs.validator_for(schema).validate(response.json())


@pytest.mark.parametrize("service", list(APPS))
class TestTheProbesAnswersAreDeclared:
    def test_healthz_while_the_process_exits_for_a_stage_ended_for_good(
            self, service: str) -> None:
        exiting = answer("/healthz", ended=lambda: ["router-tracker"])
        assert (exiting.status_code, exiting.json()) == (
            503, {"status": "exiting", "ended": ["router-tracker"]})
        conforms(service, exiting, "/healthz")
        conforms(service, answer("/healthz"), "/healthz")

    def test_readyz_while_not_ready_with_or_without_a_task_down(self, service: str) -> None:
        task_down = answer("/readyz", down=lambda: ["lag"])
        assert (task_down.status_code, task_down.json()) == (
            503, {"status": "not_ready", "down": ["lag"]})
        conforms(service, task_down, "/readyz")
        stage_not_running = answer("/readyz", ready=False)
        assert (stage_not_running.status_code, stage_not_running.json()) == (
            503, {"status": "not_ready"})
        conforms(service, stage_not_running, "/readyz")
        conforms(service, answer("/readyz"), "/readyz")

    def test_a_declared_503_is_of_its_own_shape_not_an_error_nor_asking_to_retry(
            self, service: str) -> None:
        """A probe asks again on its own period; its 503 sends no Retry-After, and is a
        state (`status`), not the error shape (`error`, `detail`)."""
        for path, model in (("/healthz", "Exiting"), ("/readyz", "NotReady")):
            response = declared(service, path, "503")
            assert response["content"]["application/json"]["schema"] == {
                "$ref": f"#/components/schemas/{model}"}
            assert "Retry-After" not in response.get("headers", {})
