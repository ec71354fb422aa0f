"""The router's OpenAPI document gives receivers the callbacks it sends (`webhooks`):
every type of catalog.WEBHOOK_EVENTS, its signature headers, what each answer does, and
the body schema that every body the sender builds validates against."""

from __future__ import annotations

import functools
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import jsonschema_rs
import pytest

from services.core import events
from services.core.settings import Settings
from services.router import app as router_app
from services.webhooks import catalog, payloads

Type = events.TicketEventType
AT = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


@functools.cache
def document() -> dict[str, Any]:
    spec: dict[str, Any] = router_app.create_app(Settings()).openapi()
    return spec


def operation(name: str) -> dict[str, Any]:
    documented: dict[str, Any] = document()["webhooks"][name]["post"]
    return documented


def body_schema(name: str) -> Any:
    """The callback's documented body schema, with the components its references read."""
    schema = operation(name)["requestBody"]["content"]["application/json"]["schema"]
    return jsonschema_rs.validator_for({**schema, "components": document()["components"]})


def every_field(kind: Type) -> events.TicketEvent:
    """A lifecycle event of `kind` with each field a callback may carry."""
    later = AT + timedelta(hours=4)
    return events.TicketEvent(
        ticket_id="t-1", type=kind, occurred_at=AT, received_at=AT, department="government",
        segment="government", reason="route", from_department="business_desk", priority=2,
        first_response_deadline=later, platform="desk",
        deadlines={"first_response": later, "resolution": None}, paused=False,
        target="first_response", level=1, outcomes={"first_response": "met"}, as_of=AT)


class TestEveryCallbackIsDocumented:
    def test_every_type_sent_is_listed_and_no_other(self) -> None:
        assert document()["openapi"].startswith("3.1")
        assert set(document()["webhooks"]) == set(catalog.WEBHOOK_EVENTS.values())
        assert all(set(methods) == {"post"} for methods in document()["webhooks"].values())

    @pytest.mark.parametrize("name", sorted(catalog.WEBHOOK_EVENTS.values()))
    def test_each_names_its_signature_headers_and_what_answers_do(self, name: str) -> None:
        documented = operation(name)
        assert {(p["in"], p["name"], p["required"]) for p in documented["parameters"]} == {
            ("header", "webhook-id", True), ("header", "webhook-timestamp", True),
            ("header", "webhook-signature", True)}
        assert {"204", "410", "429", "503", "default"} <= set(documented["responses"])
        assert "disabled" in documented["responses"]["410"]["description"]
        assert "Retry-After" in documented["responses"]["429"]["description"]


class TestTheDocumentedBody:
    @pytest.mark.parametrize("kind", list(catalog.WEBHOOK_EVENTS))
    def test_what_the_sender_builds_validates_and_says_nothing_undocumented(
            self, kind: Type) -> None:
        body = json.loads(payloads.body_of(every_field(kind), correlation_id="c-1"))
        assert body_schema(catalog.WEBHOOK_EVENTS[kind]).is_valid(body)
        fields = document()["components"]["schemas"]["CallbackData"]["properties"]
        assert set(body["data"]) <= set(fields)
        assert len(body["data"]) == len(fields)  # each field documented is one it can send

    def test_a_body_of_another_type_does_not_validate(self) -> None:
        routed = json.loads(payloads.body_of(every_field(Type.ROUTED), correlation_id="c-1"))
        assert not body_schema("ticket.resolved").is_valid(routed)

    def test_the_correlation_id_is_required(self) -> None:
        routed = json.loads(payloads.body_of(every_field(Type.ROUTED), correlation_id="c-1"))
        del routed["data"]["correlation_id"]
        assert not body_schema("ticket.routed").is_valid(routed)
