"""Every 503 and 429 each service's OpenAPI documents says it comes with `Retry-After`,
as every one of them is sent: the intake's 503s (Kafka did not acknowledge) said
"retry after Retry-After" without documenting the header. But the probes' 503s, which
send none (a probe asks again on its own period: tests/unit/test_openapi_probes.py)."""

from __future__ import annotations

import functools
from typing import Any

import pytest

from services.core import http_docs
from services.core.settings import Settings
from services.metrics import app as metrics_app
from services.router import app as router_app
from services.segmenter import app as segmenter_app

APPS = {"router": router_app, "segmenter": segmenter_app, "metrics": metrics_app}


@functools.cache
def spec_of(service: str) -> dict[str, Any]:
    document: dict[str, Any] = APPS[service].create_app(Settings()).openapi()
    return document


PROBES = ("/healthz", "/readyz")


def retry_later(service: str) -> list[tuple[str, str, str, dict[str, Any]]]:
    """(method, path, status, response) of every documented 503 and 429 but the
    probes'."""
    return [(method, path, status, response)
            for path, operations in spec_of(service)["paths"].items()
            for method, operation in operations.items()
            for status, response in operation["responses"].items()
            if status in ("503", "429") and path not in PROBES]


@pytest.mark.parametrize("service", list(APPS))
def test_every_503_and_429_documented_has_retry_after(service: str) -> None:
    for method, path, status, response in retry_later(service):
        assert response.get("headers", {}).get("Retry-After") == \
            http_docs.RETRY_AFTER["Retry-After"], (method, path, status)


def test_there_are_some_of_each_to_check() -> None:
    documented = {(service, method, path, status) for service in APPS
                  for method, path, status, _response in retry_later(service)}
    assert ("router", "post", "/v1/tickets", "503") in documented
    assert ("router", "post", "/v1/tickets", "429") in documented
    assert ("router", "get", "/v1/dead-letters", "503") in documented
    assert ("router", "get", "/v1/credentials/me", "503") in documented
    assert ("metrics", "get", "/v1/departments", "429") in documented
    assert ("segmenter", "post", "/v1/segment-rules/dry-run", "429") in documented
