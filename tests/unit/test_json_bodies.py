"""A JSON body the framework cannot read is a 400 that says why (README, "Hostile
input"): not UTF-8 (a byte that is not, or the whole text in UTF-16 or UTF-32, which
Python's JSON reader would otherwise take), or nested deeper than the reader goes. The
services' shared HTTP edge (http.install), called as ASGI: no sockets."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import pytest
from fastapi import FastAPI

from services.core import http


def app() -> FastAPI:
    service = FastAPI()

    @service.post("/things")
    async def post(body: dict[str, Any]) -> dict[str, int]:
        return {"fields": len(body)}

    http.install(service, ready=lambda: True)
    return service


async def post(chunks: Iterable[bytes], *,
               content_type: bytes = b"application/json") -> tuple[int, dict[str, Any]]:
    """`chunks` sent as the body's parts, as a client streaming it would."""
    parts = list(chunks)
    incoming = [{"type": "http.request", "body": part, "more_body": i < len(parts) - 1}
                for i, part in enumerate(parts)]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": "/things", "raw_path": b"/things",
             "root_path": "", "query_string": b"", "client": ("127.0.0.1", 1),
             "server": ("127.0.0.1", 80), "headers": [(b"content-type", content_type)]}
    await app()(scope, receive, send)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, json.loads(body)


TICKET = '{"customer_id": "c-1", "subject": "Où est ma facture ?"}'


async def test_a_utf8_body_is_read() -> None:
    assert await post([TICKET.encode()]) == (200, {"fields": 2})


async def test_a_utf8_byte_order_mark_is_let_through() -> None:
    assert await post([b"\xef\xbb\xbf" + TICKET.encode()]) == (200, {"fields": 2})


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-32",
                                      "utf-32-le"])
async def test_a_body_in_utf16_or_utf32_is_refused_as_not_utf8(encoding: str) -> None:
    status, answer = await post([TICKET.encode(encoding)])
    assert status == 400
    assert answer["field"] == "body"
    assert "not UTF-8 text (it is UTF-16 or UTF-32)" in answer["detail"]
    assert "send a JSON object, UTF-8" in answer["detail"]


async def test_utf16_sent_a_byte_at_a_time_is_refused_too() -> None:
    encoded = TICKET.encode("utf-16-le")
    status, answer = await post([encoded[i:i + 1] for i in range(len(encoded))])
    assert (status, answer["field"]) == (400, "body")


async def test_a_byte_that_is_not_utf8_is_named() -> None:
    status, answer = await post([b'{"customer_id": "x\xff\xfe"}'])
    assert status == 400
    assert answer == {"error": "bad_request", "field": "body", "detail": (
        "the body is not UTF-8 text (byte 18 is not valid UTF-8); send a JSON object,"
        " UTF-8, with Content-Type: application/json")}


async def test_a_body_nested_too_deeply_says_so() -> None:
    status, answer = await post([b"[" * 100_000 + b"]" * 100_000])
    assert status == 400
    assert answer["field"] == "body"
    assert "nested too deeply" in answer["detail"]


async def test_a_body_of_another_type_is_not_looked_at_for_its_encoding() -> None:
    """The check is on JSON bodies: a text body is the route's to refuse (here the 422 of
    a body that is not a JSON object)."""
    status, answer = await post([TICKET.encode("utf-16")], content_type=b"text/plain")
    assert status == 422
    assert answer["error"] == "invalid_request"
