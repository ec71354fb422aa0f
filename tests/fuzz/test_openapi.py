"""Every operation of every service's OpenAPI, fuzzed by schemathesis with valid and
invalid input: no answer may be a 5xx, or a status, content type, header or body that
the schema does not document."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis

from services.core.settings import Settings
from services.metrics import app as metrics_app
from services.router import app as router_app
from services.segmenter import app as segmenter_app
from tests.fuzz import conftest as fuzzing

# schemathesis draws from `random` inside strategies when generation is derandomised.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Do not use the `random` module inside strategies"
    ":hypothesis.errors.HypothesisDeprecationWarning")


@pytest.fixture
def router_schema(fuzz_settings: Settings) -> Iterator[schemathesis.BaseSchema]:
    yield from fuzzing.load_schema(router_app.create_app(fuzz_settings))


@pytest.fixture
def segmenter_schema(fuzz_settings: Settings) -> Iterator[schemathesis.BaseSchema]:
    yield from fuzzing.load_schema(segmenter_app.create_app(fuzz_settings))


@pytest.fixture
def metrics_schema(fuzz_settings: Settings) -> Iterator[schemathesis.BaseSchema]:
    yield from fuzzing.load_schema(metrics_app.create_app(fuzz_settings))


def test_router(router_schema: schemathesis.BaseSchema, credentials: fuzzing.Credentials,
                subtests: pytest.Subtests) -> None:
    fuzzing.fuzz_every_operation("router", router_schema, credentials, subtests)


def test_segmenter(segmenter_schema: schemathesis.BaseSchema,
                   credentials: fuzzing.Credentials, subtests: pytest.Subtests) -> None:
    fuzzing.fuzz_every_operation("segmenter", segmenter_schema, credentials, subtests)


def test_metrics(metrics_schema: schemathesis.BaseSchema, credentials: fuzzing.Credentials,
                 subtests: pytest.Subtests) -> None:
    fuzzing.fuzz_every_operation("metrics", metrics_schema, credentials, subtests)
