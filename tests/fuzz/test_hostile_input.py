"""Hand-made hostile requests to the JSON endpoints: each answers 4xx in the project's
error shape, never 5xx.

Unknown-fields policy: a JSON request body that names a field the model does not know
is refused with 422 naming the field (`extra="forbid"` on every request model), so a
typo never passes silently. Extra data a platform wants to send with a ticket goes into
`attributes`, the map that exists for it. Unknown query parameters are ignored, as HTTP
caches and proxies expect."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from services.core.settings import Settings
from services.router import app as router_app
from services.segmenter import app as segmenter_app
from tests.credentials import bearer, issue_token

TICKET = {"customer_id": "c-1", "subject": "help", "body": "text", "channel": "email"}


async def lifespan_client(app: FastAPI, token: str) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://service",
                                     headers=bearer(token), timeout=30) as client:
            yield client


@pytest.fixture
async def router(fuzz_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    token = await issue_token(fuzz_settings.database_url, "platform", "hostile")
    async for client in lifespan_client(router_app.create_app(fuzz_settings), token):
        yield client


@pytest.fixture
async def segmenter(fuzz_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    token = await issue_token(fuzz_settings.database_url, "admin")
    async for client in lifespan_client(segmenter_app.create_app(fuzz_settings), token):
        yield client


def refused(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    answer: dict[str, Any] = response.json()
    assert isinstance(answer["error"], str)
    if status == 422:
        assert answer["fields"], answer
        for problem in answer["fields"]:
            assert set(problem) == {"field", "problem", "type"}
    return answer


def post_ticket(client: httpx.AsyncClient, content: bytes | str,
                content_type: str | None = "application/json") -> Any:
    headers = {"content-type": content_type} if content_type else {}
    return client.post("/v1/tickets", content=content, headers=headers)


class TestMalformedJson:
    # Too deep for the JSON parser: 400, like any body that cannot be read.
    async def test_deep_nesting_is_refused(self, router: httpx.AsyncClient) -> None:
        refused(await post_ticket(router, "[" * 100_000 + "]" * 100_000), 400)

    async def test_deep_nesting_in_a_field_is_refused(self, router: httpx.AsyncClient) -> None:
        nested = '{"customer_id": ' + "[" * 100_000 + "]" * 100_000 + "}"
        refused(await post_ticket(router, nested), 400)

    async def test_invalid_utf8_is_refused(self, router: httpx.AsyncClient) -> None:
        body = b'{"customer_id": "\xff\xfe", "subject": "\xc3\x28"}'
        answer = refused(await post_ticket(router, body), 400)
        assert answer["error"] == "bad_request"

    async def test_truncated_json_is_refused(self, router: httpx.AsyncClient) -> None:
        refused(await post_ticket(router, '{"customer_id": "c-1", "subj'), 422)


class TestWrongShapes:
    @pytest.mark.parametrize("body", ["null", "[]", "[1, 2]", '"ticket"', "42", "true"])
    async def test_a_body_that_is_not_an_object(self, router: httpx.AsyncClient,
                                                body: str) -> None:
        refused(await post_ticket(router, body), 422)

    async def test_a_huge_field_within_the_size_limit(self, router: httpx.AsyncClient) -> None:
        ticket = {**TICKET, "body": "x" * 900_000}
        answer = refused(await post_ticket(router, json.dumps(ticket)), 422)
        assert answer["fields"][0]["field"] == "body.body"

    async def test_a_number_for_a_timestamp(self, router: httpx.AsyncClient) -> None:
        response = await router.post("/v1/tickets/t-1/events",
                                      json={"type": "resolved", "occurred_at": 0})
        assert response.status_code in (403, 422)  # a platform may not report events


class TestContentType:
    @pytest.mark.parametrize("content_type", ["text/plain", "application/xml", None])
    async def test_json_under_another_content_type(self, router: httpx.AsyncClient,
                                                   content_type: str | None) -> None:
        response = await post_ticket(router, json.dumps(TICKET), content_type)
        assert response.status_code in (202, 422), response.text
        if response.status_code == 422:
            refused(response, 422)

    async def test_form_data(self, router: httpx.AsyncClient) -> None:
        refused(await router.post("/v1/tickets", data=TICKET), 422)


class TestUnknownFields:
    async def test_an_unknown_ticket_field_is_named(self, router: httpx.AsyncClient) -> None:
        answer = refused(await router.post("/v1/tickets", json={**TICKET, "priority": 1}), 422)
        assert [p["field"] for p in answer["fields"]] == ["body.priority"]
        assert answer["fields"][0]["type"] == "extra_forbidden"

    async def test_extra_data_goes_into_attributes(self, router: httpx.AsyncClient) -> None:
        response = await router.post("/v1/tickets",
                                     json={**TICKET, "attributes": {"priority_hint": 1}})
        assert response.status_code == 202, response.text

    async def test_an_unknown_customer_field_is_named(self, segmenter: httpx.AsyncClient
                                                      ) -> None:
        answer = refused(await segmenter.put(
            "/v1/customers/c-1", json={"customer_type": "consumer", "shoe_size": 44}), 422)
        assert "body.shoe_size" in [p["field"] for p in answer["fields"]]


class TestFrameworkRefusals:
    async def test_unknown_path_in_the_error_shape(self, router: httpx.AsyncClient) -> None:
        assert refused(await router.get("/v1/nothing-here"), 404)["error"] == "not_found"

    async def test_wrong_method_names_every_allowed_one(self, segmenter: httpx.AsyncClient
                                                        ) -> None:
        response = await segmenter.patch("/v1/customers/c-1", json={})
        assert refused(response, 405)["error"] == "method_not_allowed"
        assert set(response.headers["allow"].split(", ")) >= {"GET", "PUT", "DELETE"}
