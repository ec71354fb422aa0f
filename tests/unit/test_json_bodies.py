"""A JSON body the framework cannot read is a 400 that says why (README, "Hostile
input"): not UTF-8 (a byte that is not, or the whole text in UTF-16 or UTF-32, which
Python's JSON reader would otherwise take), or nested deeper than the reader goes. The
services' shared HTTP edge (http.install), called as ASGI: no sockets."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel, Field

from services.core import http, tickets


def app() -> FastAPI:
    service = FastAPI()

    @service.post("/things")
    async def post(body: dict[str, Any]) -> dict[str, int]:
        return {"fields": len(body)}

    @service.put("/file")
    async def put(text: http.YamlText) -> dict[str, int]:
        return {"characters": len(text)}

    http.install(service, ready=lambda: True)
    return service


async def post(chunks: Iterable[bytes], *, content_type: bytes = b"application/json",
               headers: Iterable[tuple[bytes, bytes]] = (), method: str = "POST",
               path: str = "/things", answered: dict[str, str] | None = None,
               ) -> tuple[int, dict[str, Any]]:
    """`chunks` sent as the body's parts, as a client streaming it would; the answer's
    headers put in `answered`."""
    parts = list(chunks)
    incoming = [{"type": "http.request", "body": part, "more_body": i < len(parts) - 1}
                for i, part in enumerate(parts)]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": method, "scheme": "http", "path": path, "raw_path": path.encode(),
             "root_path": "", "query_string": b"", "client": ("127.0.0.1", 1),
             "server": ("127.0.0.1", 80),
             "headers": [(b"content-type", content_type), *headers]}
    await app()(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    status = start["status"]
    if answered is not None:
        answered.update((name.decode(), value.decode()) for name, value in start["headers"])
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
    assert answer["detail"].startswith("the body is not UTF-8 text (it starts as UTF-16")
    assert "send a JSON object, UTF-8" in answer["detail"]


async def test_no_body_is_told_to_send_one() -> None:
    """An empty body was answered pydantic's `body: Field required`, which reads as a
    field named body."""
    status, answer = await post([b""])
    assert (status, answer["fields"]) == (422, [{
        "field": "body", "type": "missing",
        "problem": "no body was sent; send a JSON object, UTF-8, with Content-Type:"
                   " application/json"}])


async def test_utf16_sent_a_byte_at_a_time_is_refused_too() -> None:
    encoded = TICKET.encode("utf-16-le")
    status, answer = await post([encoded[i:i + 1] for i in range(len(encoded))])
    assert (status, answer["field"]) == (400, "body")


async def test_a_byte_that_is_not_utf8_is_named() -> None:
    """In the one error shape (`fields`, as a 422's), with the `field` a 400 had before
    kept beside it."""
    status, answer = await post([b'{"customer_id": "x\xff\xfe"}'])
    said = ("the body is not UTF-8 text (byte 18 is not valid UTF-8); send a JSON object,"
            " UTF-8, with Content-Type: application/json")
    assert status == 400
    assert answer == {"error": "bad_request", "field": "body", "detail": said, "fields": [
        {"field": "body", "type": "unreadable_body", "problem": said}]}


async def test_a_body_nested_too_deeply_says_so() -> None:
    status, answer = await post([b"[" * 100_000 + b"]" * 100_000])
    assert status == 400
    assert answer["field"] == "body"
    assert "nested too deeply" in answer["detail"]


@pytest.mark.parametrize(("content_type", "headers"), [
    (b"text/plain", ()),
    # FastAPI reads the first content type, and strips what bytes.strip would leave.
    (b"application/json\xa0", ()),
    (b"application/json", [(b"content-type", b"text/plain")]),
])
async def test_the_check_holds_whatever_the_content_type_says(
        content_type: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    """Every body the limit covers is JSON or YAML, UTF-8: its first bytes are checked
    whatever type it claims, so no reading of the header lets one through."""
    status, answer = await post([TICKET.encode("utf-16")], content_type=content_type,
                                headers=headers)
    assert (status, answer["field"]) == (400, "body")


@pytest.mark.parametrize("body", [b"\x00", b"ab\x00", b"version: x\x00"])
async def test_a_nul_that_is_no_encodings_mark_is_left_to_the_reader(body: bytes) -> None:
    """A lone NUL, or one past the first two bytes, is not UTF-16 or UTF-32 to Python's
    JSON reader either: the route's reader refuses it with where it is (the YAML
    loader's 422 names the line), not this check."""
    assert await post([body], method="PUT", path="/file",
                      content_type=b"application/yaml") == (200, {"characters": len(body)})


@pytest.mark.parametrize("content_type", [b"application/yaml", b"application/json"])
async def test_a_yaml_upload_in_utf16_is_a_400_not_a_500(content_type: bytes) -> None:
    """A route that reads its body itself (a configuration upload) meets the refusal as
    an exception: answered as the JSON routes answer it."""
    status, answer = await post(["version: x\n".encode("utf-16")], method="PUT",
                                path="/file", content_type=content_type)
    assert (status, answer["field"]) == (400, "body")
    assert answer["detail"].startswith("the body is not UTF-8 text")
    assert await post([b"version: x\n"], method="PUT", path="/file",
                      content_type=content_type) == (200, {"characters": 11})


class TestOneErrorShape:
    """Every answer that refuses fields names them in `fields` (a 400 had a top-level
    `field` alone, a 422 `fields` alone) and says the first in `detail` (a 422 had
    none): a client reads one shape."""

    async def test_a_422_says_its_first_problem_in_detail_too(self) -> None:
        status, answer = await post([b'[1]'])
        assert status == 422
        [problem] = answer["fields"]
        assert answer["detail"] == f"{problem['field']}: {problem['problem']}"

    @pytest.mark.parametrize("body", [TICKET.encode("utf-16"), b'{"a": "\xff"}',
                                      b"[" * 100_000])
    async def test_a_400_names_the_body_in_fields_and_keeps_field(self, body: bytes) -> None:
        status, answer = await post([body])
        assert status == 400
        assert answer["field"] == "body"
        assert answer["fields"] == [{"field": "body", "type": "unreadable_body",
                                     "problem": answer["detail"]}]


class TestAJsonSyntaxError:
    """Named `body`, its place said as a line and column: FastAPI named the character
    the reader stopped at as if it were a path (`body.64`)."""

    @pytest.mark.parametrize(("body", "where"), [
        (b'{"customer_id": "c-1",}', "at line 1, column 23 (character 23 of the body)"),
        (b'{\n  "customer_id": "c-1"\n  "subject": "s"\n}',
         "at line 3, column 3 (character 28 of the body)"),
        # Counted in characters, not bytes.
        (b'{"subject": "\xc3\xa9t\xc3\xa9" x}',
         "at line 1, column 19 (character 19 of the body)"),
        (b'{"a": 1} 2', "Extra data at line 1, column 10"),
    ])
    async def test_is_named_body_with_its_line_and_column(self, body: bytes,
                                                          where: str) -> None:
        status, answer = await post([body])
        assert status == 422
        [problem] = answer["fields"]
        assert (problem["field"], problem["type"]) == ("body", "json_invalid")
        assert problem["problem"].startswith("not valid JSON: ")
        assert where in problem["problem"]
        assert "send a JSON object, UTF-8" in problem["problem"]


class TestACompressedBody:
    """A body sent with a Content-Encoding other than identity is refused, 415 naming the
    header and what is accepted, before it is read: it was read as text and answered
    400 "not UTF-8 (byte 1 ...)"."""

    @staticmethod
    async def sent(body: bytes, *codings: bytes, method: str = "POST", path: str = "/things",
                   answered: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
        return await post([body], method=method, path=path, answered=answered, headers=[
            (b"content-length", str(len(body)).encode()),
            *((b"content-encoding", coding) for coding in codings)])

    @pytest.mark.parametrize("coding", [b"gzip", b"GZIP", b"deflate", b"br",
                                        b"identity, gzip", b"x-anything"])
    async def test_is_refused_naming_the_header(self, coding: bytes) -> None:
        answered: dict[str, str] = {}
        status, answer = await self.sent(gzip.compress(TICKET.encode()), coding,
                                         answered=answered)
        assert status == 415
        [problem] = answer["fields"]
        assert (problem["field"], problem["type"]) == ("header.Content-Encoding",
                                                       "unsupported_encoding")
        assert "send it uncompressed (no Content-Encoding, or identity)" in problem["problem"]
        assert answer["error"] == "unsupported_media_type"
        assert answered["accept-encoding"] == "identity"

    async def test_a_second_header_line_counts_too(self) -> None:
        status, _answer = await self.sent(TICKET.encode(), b"identity", b"gzip")
        assert status == 415

    async def test_a_body_in_chunks_without_a_length_is_refused_too(self) -> None:
        status, _answer = await post([gzip.compress(TICKET.encode())], headers=[
            (b"transfer-encoding", b"chunked"), (b"content-encoding", b"gzip")])
        assert status == 415

    async def test_is_refused_on_a_route_that_reads_its_body_itself_too(self) -> None:
        status, _answer = await self.sent(gzip.compress(b"version: x\n"), b"gzip",
                                          method="PUT", path="/file")
        assert status == 415

    @pytest.mark.parametrize("coding", [b"identity", b"Identity", b"", b" identity , "])
    async def test_identity_is_no_compression(self, coding: bytes) -> None:
        assert await self.sent(TICKET.encode(), coding) == (200, {"fields": 2})

    def test_is_documented_on_every_operation_with_a_body(self) -> None:
        operations = app().openapi()["paths"]
        assert "415" in operations["/things"]["post"]["responses"]
        assert "415" not in operations["/healthz"]["get"]["responses"]


class TestARepeatedKey:
    """Refused, 422 naming each by its path: Python's reader kept the last silently."""

    async def test_each_is_named_by_its_path_with_how_many_times_it_came(self) -> None:
        status, answer = await post([
            b'{"channel": "fax", "attributes": {"a": 1, "a": 2, "a": 3},'
            b' "items": [{"x": 1}, {"x": 1, "x": 2}], "channel": "email"}'])
        assert status == 422
        assert [(problem["field"], problem["type"]) for problem in answer["fields"]] == [
            ("body.channel", "repeated_key"), ("body.attributes.a", "repeated_key"),
            ("body.items.1.x", "repeated_key")]
        assert "'a' is given 3 times in one object: keys must be unique" in \
            answer["fields"][1]["problem"]
        assert answer["detail"].startswith("body.channel: the key 'channel' is given 2")

    async def test_an_answer_names_the_first_hundred_and_counts_the_rest(self) -> None:
        body = "[" + ", ".join('{"k": 1, "k": 2}' for _ in range(150)) + "]"
        status, answer = await post([body.encode()])
        assert status == 422
        assert len(answer["fields"]) == http.MAX_FIELD_ERRORS + 1
        assert answer["fields"][-1] == {
            "field": "body", "type": "too_many_errors",
            "problem": "50 more problems not named here: mend these first"}


class Labelled(BaseModel):
    # A constraint (a length, a pattern) has pydantic refuse a lone surrogate itself,
    # before tickets.Text's own check: a credential's label, a ticket's subject.
    label: tickets.Text = Field(default="", max_length=200)
    plain: str = Field(default="", max_length=10)


class TestALoneSurrogate:
    """A JSON string may escape a lone surrogate (`"\\ud800"`), which is no Unicode
    character: a text field given one is a 422 naming it, in our words (what
    tickets.valid_text says), not pydantic's "unable to parse raw data"."""

    @pytest.mark.parametrize("body", [b'{"label": "desk \\ud800"}', b'{"label": "\\udfff"}',
                                      b'{"plain": "\\ud800"}'])
    async def test_is_named_as_no_unicode_text(self, body: bytes) -> None:
        service = FastAPI()

        @service.post("/things")
        async def post(body: Labelled) -> dict[str, int]:
            return {}

        http.install(service, ready=lambda: True)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=service),
                                     base_url="http://test") as client:
            answer = await client.post("/things", content=body,
                                       headers={"content-type": "application/json"})
        assert answer.status_code == 422
        [refused] = answer.json()["fields"]
        field = "body.plain" if b"plain" in body else "body.label"
        assert (refused["field"], refused["problem"]) == (
            field, "not valid Unicode text (it holds a lone surrogate such as \\ud800);"
                   " send UTF-8 text")
