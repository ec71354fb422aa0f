"""Each service's OpenAPI document says which routes need a token, and how to send it:
every route but the health ones declares the one bearer scheme (the credential checks
are HTTP bearer schemes of their own, services/core/auth.py, and must all show as it)."""

from __future__ import annotations

import functools
from typing import Any

import pytest

from services.core import auth
from services.core.settings import Settings
from services.metrics import app as metrics_app
from services.router import app as router_app
from services.segmenter import app as segmenter_app

OPEN = {("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/metrics")}
APPS = {"router": router_app, "segmenter": segmenter_app, "metrics": metrics_app}
BEARER: list[dict[str, list[str]]] = [{"HTTPBearer": []}]


@functools.cache
def spec_of(service: str) -> dict[str, Any]:
    document: dict[str, Any] = APPS[service].create_app(Settings()).openapi()
    return document


@pytest.mark.parametrize("service", list(APPS))
class TestTheBearerScheme:
    def test_one_is_declared(self, service: str) -> None:
        assert spec_of(service)["components"]["securitySchemes"] == {"HTTPBearer": {
            "type": "http", "scheme": "bearer", "description": auth.BEARER_DESCRIPTION}}

    def test_every_route_but_the_health_ones_asks_for_it(self, service: str) -> None:
        operations = {(method.upper(), path): operation
                      for path, methods in spec_of(service)["paths"].items()
                      for method, operation in methods.items()}
        assert set(operations) >= OPEN
        for key, operation in operations.items():
            expected = None if key in OPEN else BEARER
            assert operation.get("security") == expected, key


class TestTheIntakeRoutes:
    def test_document_their_headers_and_path_alone(self) -> None:
        """The intake's routes read the router's context off the request: their headers
        and path (and nothing else) are still their parameters."""
        paths = spec_of("router")["paths"]
        for path in ("/v1/tickets", "/v1/tickets/{ticket_id}/events"):
            names = {(p["in"], p["name"]) for p in paths[path]["post"]["parameters"]}
            assert {("header", "X-Correlation-ID"), ("header", "Idempotency-Key")} <= names
            assert all(place in {"header", "path"} for place, _name in names), names
