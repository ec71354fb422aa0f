"""Each text form (services/core/text_forms.py) says in words what its pattern accepts, and
an error refusing a text by its pattern says those words, not the regex. Every pattern
pydantic checks, in any model of the services or in a parameter of any route, is a form's:
a pattern added without words fails here."""

from __future__ import annotations

import importlib
import pkgutil
import re
from collections.abc import Iterator
from typing import Annotated, Any

import pytest
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field, TypeAdapter, ValidationError

import services
from services.core import (
    access,
    body_bytes,
    config_history_api,
    credentials_api,
    data_paths,
    dead_letter_reading,
    events,
    faults,
    identifiers,
    request_bodies,
    settings,
    text_forms,
    topics,
)
from services.metrics import app as metrics_app
from services.router import app as router_app
from services.router import intake_policy
from services.segmenter import app as segmenter_app
from services.segmenter import rows
from services.webhooks import api as webhooks_api

# Each form, texts it accepts (the examples its words give among them) and texts it refuses.
FORMS: list[tuple[text_forms.Form, list[str], list[str]]] = [
    (topics.DEPARTMENT_NAME, ["billing", "customer_care", "vip-2", "a" * topics.MAX_NAME],
     ["Billing Dept", "billing dept", "2nd_line", "_billing", "a" * (topics.MAX_NAME + 1),
      "facturación"]),
    (identifiers.ID, ["t-1", "customer.17:a@b_c"], ["t 1", "", "t/1", "tïcket"]),
    (intake_policy.CORRELATION_ID, ["", "abc-123!~"], ["a b", "a\tb", "é"]),
    (intake_policy.KEY, ["order-17", "!"], ["", "order 17", "é"]),
    (dead_letter_reading.ID, ["0:42", "123456789:1234567890123456789"],
     ["0", "0:", ":42", "a:42", "0-42", "1234567890:1"]),
    (rows.CURRENCY, ["EUR", "USD"], ["eur", "EU", "EURO", "€"]),
    (webhooks_api.DELIVERY_ID, ["msg_a", "msg_" + "a" * 76, "msg_2Abc.d-e_f"],
     ["msg_", "a", "msg_" + "a" * 77, "msg_a b"]),
    (access.SUBJECT, ["helpdesk", "2nd.line_desk-1", "a" * 63],
     ["Helpdesk", "-desk", "help desk", "a" * 64]),
    (settings.RATE,
     ["200/second", "6000/minute", "10 per second", "100/5 minutes", "1 per day"],
     ["fast", "0/second", "10/fortnight", "10 / sec"]),
    (body_bytes.BYTE_RATE,
     ["4MiB/second", "240 MiB per minute", "1048576/second", "16 GiB / day"],
     ["4 megabytes a second", "4mib/second", "4MB/second"]),
    (credentials_api.CREDENTIAL_ID, ["0123456789ab"], ["0123456789AB", "0123456789a"]),
    (config_history_api.COMMENT, ["", "why: the new desk"], ["a\nb", "a\tb", "\x7f"]),
    (settings.INSTANCE_ID, ["0", "router-7d9f8c6b5-x2k4q", "a" * 64],
     ["", "a b", "a" * 65, "router/1"]),
    (settings.LOG_FORMAT, ["json", "text"], ["JSON", "yaml", ""]),
]


def refusal(form: text_forms.Form, text: str) -> dict[str, Any]:
    """pydantic's error refusing `text` by the form's pattern, as our readers get it."""
    with pytest.raises(ValidationError) as refused:
        TypeAdapter(Annotated[str, Field(pattern=form.pattern)]).validate_python(text)
    [error] = refused.value.errors(include_input=False, include_url=False)
    return dict(error)


@pytest.mark.parametrize(("form", "accepted", "refused"), FORMS,
                         ids=[form.words[:30] for form, _, _ in FORMS])
class TestEachForm:
    def test_its_pattern_takes_what_its_words_say(self, form: text_forms.Form,
                                                  accepted: list[str], refused: list[str]
                                                  ) -> None:
        for text in accepted:
            assert re.search(form.pattern, text), text
        for text in refused:
            assert not re.search(form.pattern, text), text

    def test_a_text_it_refuses_is_told_its_words(self, form: text_forms.Form,
                                                 accepted: list[str], refused: list[str]
                                                 ) -> None:
        for text in refused:
            error = refusal(form, text)
            assert error["type"] == text_forms.MISMATCH
            assert request_bodies.message_of(error) == f"should be {form.words}"
            assert data_paths.reasons([error]) == f"record: should be {form.words}"


class TestTheWords:
    def test_of_a_department_name(self) -> None:
        assert topics.DEPARTMENT_NAME.words == (
            "a name of lower-case letters, digits, '_' or '-', starting with a letter, at"
            " most 63 characters")

    def test_of_a_rate(self) -> None:
        assert settings.RATE.words.startswith(
            "a rate such as 200/second, 6000/minute, 10 per second or 100/5 minutes")

    def test_of_a_byte_rate_are_its_checks(self) -> None:
        assert body_bytes.BYTE_RATE.words == body_bytes.ACCEPTED

    def test_say_no_value(self) -> None:
        """A record's reason quotes nothing of it (tests/unit/test_reasons_quote_no_values.py):
        the words are the form's alone, whatever was refused."""
        sentinel = "Jane Doe 1980"
        error = refusal(topics.DEPARTMENT_NAME, sentinel)
        assert sentinel not in request_bodies.message_of(error)
        assert "Jane" not in data_paths.reasons([error])

    def test_a_records_dead_letter_reason_says_them(self) -> None:
        with pytest.raises(ValidationError) as refused:
            events.TicketEvent.model_validate({
                "ticket_id": "t-1", "type": "ticket.transferred",
                "occurred_at": "2026-01-31T09:30:00+00:00", "department": "Billing Dept"})
        assert faults.reason(refused.value) == (
            f"department: should be {topics.DEPARTMENT_NAME.words}")

    def test_settings_errors_say_them(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("LOG_FORMAT", "yaml")
        with pytest.raises(settings.InvalidSettings) as refused:
            settings.from_environment()
        assert refused.value.problems == ["LOG_FORMAT: should be json or text"]

    def test_a_pattern_said_two_ways_is_refused(self) -> None:
        with pytest.raises(ValueError, match="already said"):
            text_forms.Form(topics.DEPARTMENT_NAME.pattern, "something else")

    def test_a_pattern_of_no_form_keeps_pydantics_message(self) -> None:
        with pytest.raises(ValidationError) as refused:
            TypeAdapter(Annotated[str, Field(pattern="^y$")]).validate_python("x")
        [detail] = refused.value.errors()
        assert request_bodies.message_of(detail) == "String should match pattern '^y$'"


def _models() -> Iterator[type[BaseModel]]:
    for module in pkgutil.walk_packages(services.__path__, "services."):
        if ".migrations" not in module.name and not module.name.endswith("__main__"):
            importlib.import_module(module.name)
    waiting = list(BaseModel.__subclasses__())
    while waiting:
        model = waiting.pop()
        waiting += model.__subclasses__()
        if model.__module__.startswith("services."):
            yield model


def _checked_patterns(schema: Any) -> Iterator[str]:
    """The patterns a pydantic core schema checks (a `str` schema's), not those it only
    shows in its JSON schema."""
    if isinstance(schema, dict):
        if schema.get("type") == "str" and "pattern" in schema:
            yield schema["pattern"]
        for value in schema.values():
            yield from _checked_patterns(value)
    elif isinstance(schema, list | tuple):
        for value in schema:
            yield from _checked_patterns(value)


def _routes(routes: list[Any]) -> Iterator[APIRoute]:
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        elif hasattr(route, "original_router"):  # an included router
            yield from _routes(route.original_router.routes)
        elif hasattr(route, "routes"):
            yield from _routes(route.routes)


def _parameters_patterns(dependant: Dependant) -> Iterator[tuple[str, str]]:
    for parameter in (dependant.path_params + dependant.query_params
                      + dependant.header_params + dependant.cookie_params
                      + dependant.body_params):
        for constraint in parameter.field_info.metadata:
            if getattr(constraint, "pattern", None):
                yield parameter.name, constraint.pattern
    for needed in dependant.dependencies:
        yield from _parameters_patterns(needed)


APPS = {"router": router_app, "segmenter": segmenter_app, "metrics": metrics_app}


class TestEveryPatternHasWords:
    def test_in_every_model(self) -> None:
        models = list(_models())
        assert credentials_api.CredentialRequest in models and settings.Settings in models
        unsaid = {(model.__qualname__, pattern) for model in models
                  for pattern in _checked_patterns(model.__pydantic_core_schema__)
                  if text_forms.words_of(pattern) is None}
        assert not unsaid

    @pytest.mark.parametrize("service", list(APPS))
    def test_in_every_routes_parameters(self, service: str) -> None:
        app: FastAPI = APPS[service].create_app(settings.Settings())
        found = {(route.path, name, pattern) for route in _routes(app.routes)
                 for name, pattern in _parameters_patterns(route.dependant)}
        assert found  # each service has a route parameter of a pattern
        assert not {place for place in found if text_forms.words_of(place[2]) is None}

    def test_the_schema_keeps_them(self) -> None:
        """The OpenAPI document still shows each field's pattern (clients, fuzzers)."""
        schemas = router_app.create_app(settings.Settings()).openapi()["components"]["schemas"]
        assert schemas["Transfer"]["properties"]["to_department"]["pattern"] == (
            topics.DEPARTMENT_NAME.pattern)
        assert {"type": "string", "pattern": settings.RATE.pattern} in (
            schemas["CredentialRequest"]["properties"]["rate_limit"]["anyOf"])
