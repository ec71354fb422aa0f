"""FastAPI's own OpenTelemetry is off in every service (services/core/http.py,
`telemetry_off`): its logs would record validation failures and exception messages,
which may quote a request's personal data, and it would switch itself on from the
environment (FASTAPI_OTEL_AUTO_CONFIGURE=true) or when any provider is configured.

FastAPI keeps no public record of its telemetry: these read what the pinned version
(0.163) keeps, `app._telemetry` (the config its lifespan reads to add exporters) and
`app._native_telemetry.enabled()` (the check each request makes before tracing it)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI
from opentelemetry import _logs, metrics, trace

from services.core.settings import Settings
from services.metrics import app as metrics_app
from services.router import app as router_app
from services.segmenter import app as segmenter_app

APPS: dict[str, Any] = {"router": router_app, "segmenter": segmenter_app,
                        "metrics": metrics_app}


def built(service: str, monkeypatch: pytest.MonkeyPatch) -> FastAPI:
    monkeypatch.setenv("FASTAPI_OTEL_AUTO_CONFIGURE", "true")
    app: FastAPI = APPS[service].create_app(Settings())
    return app


@pytest.mark.parametrize("service", list(APPS))
class TestFastAPIsOwnTelemetry:
    def test_is_not_configured_from_the_environment(
            self, service: str, monkeypatch: pytest.MonkeyPatch) -> None:
        config = built(service, monkeypatch)._telemetry
        assert config["auto_configure"] is False
        assert (config["tracing"], config["metrics"], config["logs"]) == (False, False, False)

    def test_stays_off_with_every_provider_configured(
            self, service: str, monkeypatch: pytest.MonkeyPatch) -> None:
        """Providers set by someone else (an agent, a library) would switch it on: FastAPI
        counts any provider but the API's placeholders as configured."""
        monkeypatch.setattr(trace, "get_tracer_provider", trace.NoOpTracerProvider)
        monkeypatch.setattr(metrics, "get_meter_provider", metrics.NoOpMeterProvider)
        monkeypatch.setattr(_logs, "get_logger_provider", _logs.NoOpLoggerProvider)
        assert built(service, monkeypatch)._native_telemetry.enabled() is False


def test_the_checks_above_can_fail(monkeypatch: pytest.MonkeyPatch) -> None:
    """A FastAPI app built the default way, with the same environment and a provider, is on."""
    monkeypatch.setattr(trace, "get_tracer_provider", trace.NoOpTracerProvider)
    monkeypatch.setenv("FASTAPI_OTEL_AUTO_CONFIGURE", "true")
    app = FastAPI()
    assert app._telemetry["auto_configure"] is True
    assert app._native_telemetry.enabled() is True
