"""The limit on every request body of a service: its size (but the streamed uploads'),
its text (UTF-8: a body in UTF-16 or UTF-32 is refused from its first bytes), and its
encoding (none: a compressed body is refused, 415, before it is read).

Compressed bodies are refused rather than inflated: ours are JSON and YAML of at most a
megabyte, and a body inflated here would need a second limit, on what it inflates to
(a few kilobytes of gzip inflate to gigabytes), kept as it streams, for the imports
too; without one, a body the reader could not read as text was answered "not UTF-8"."""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

from fastapi.responses import JSONResponse

from services.core import http_answers


class BodyRefused(Exception):
    """Raised to the app, in place of the rest of a body over the limit, or of one whose
    bytes are over its credential's budget, or sent by a credential of a role the route
    does not admit."""


class NotUtf8(Exception):
    """Raised to the app, in place of a body in UTF-16 or UTF-32: Python's JSON reader
    would take it, but our bodies (JSON, YAML) are UTF-8 (RFC 8259)."""


NOT_UTF8 = ("the body is not UTF-8 text (it starts as UTF-16 or UTF-32 do: a zero byte"
            f" among its first two, or a UTF-16 byte order mark); {http_answers.SEND_JSON}")


def _utf16_or_32(first: bytes) -> bool:
    """A text in UTF-16 or UTF-32 (with or without a byte order mark), as Python's JSON
    reader tells them apart (json.detect_encoding): a UTF-16 or UTF-32 mark, or a zero
    byte among the first two. A UTF-8 mark is let through (RFC 8259 lets a reader ignore
    it), and so is a lone NUL or one further in, which the JSON or YAML reader refuses
    with where it is."""
    return first[:2] in (b"\xff\xfe", b"\xfe\xff") or (len(first) >= 2 and 0 in first[:2])


# Asked once before any of a body is read, with the request's scope: the answer to send
# instead of reading it (auth.refuse_role: a credential of a role the route does not
# admit), or None to read on.
Admit = Callable[[Any], JSONResponse | None]
# Asked before a body's bytes are read, with the request's scope and how many: the answer
# to send instead of reading them (auth.spend_body_bytes: over the credential's budget of
# bytes), or None to read on.
SpendBytes = Callable[[Any, int], JSONResponse | None]


class BodyLimit:
    """Refuses request bodies over `max_bytes` with 413, whether or not they announce
    their length. The app never sees part of such a body: a truncated configuration file
    could be valid, and put in force. The `exempt` routes, (method, path) exactly, stream
    their bodies by design. A body in UTF-16 or UTF-32 is refused as one that is not
    UTF-8 (400), from its first bytes, whatever its content type says: every body the
    limit covers is JSON or YAML, UTF-8 text. A body sent with a Content-Encoding other
    than `identity` (gzip, deflate, br...) is refused, 415, before any of it is read, on
    every route, the exempt ones too.

    `admit` is asked once before the app reads a byte of any body, the exempt routes'
    too (the framework has matched its route by then), then `spend`, for a body within
    the limit: for its declared length at once, or, sent without one (chunked), for
    each chunk before the app takes it; whatever either answers instead is the request's
    answer."""

    def __init__(self, app: Any, *, max_bytes: int,
                 exempt: Collection[tuple[str, str]] = (),
                 admit: Admit | None = None, spend: SpendBytes | None = None) -> None:
        self._app = app
        self._max_bytes = max_bytes
        self._exempt = frozenset((method.upper(), path) for method, path in exempt)
        self._admit = admit
        self._spend = spend

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        if b"content-encoding" in headers and _sends_body(headers):
            coding = _coding(scope["headers"])
            if coding is not None:
                await compressed(coding)(scope, receive, send)
                return
        exempt = (scope["method"], scope["path"]) in self._exempt
        declared = headers.get(b"content-length")
        length = int(declared) if declared is not None and declared.isdigit() else None
        if not exempt and length is not None and length > self._max_bytes:
            await self._too_large()({"type": "http"}, _no_receive, send)
            return
        seen = 0
        started = False
        admitted = self._admit is None  # asked yet
        # The declared length asked for yet (an exempt route's bytes are not counted).
        spent = exempt or self._spend is None or length == 0
        instead: JSONResponse | None = None  # the answer in place of the app's
        head = b""  # the body's first four bytes, however the client splits them

        async def counted() -> Any:
            nonlocal seen, admitted, spent, instead, head
            if instead is None and not admitted:
                admitted = True
                instead = self._admit(scope) if self._admit else None
            if instead is None and not spent and length is not None:
                spent = True
                instead = self._spend(scope, length) if self._spend else None
            if instead is not None:
                raise BodyRefused
            message = await receive()
            if exempt:
                return message
            if message["type"] == "http.request":
                chunk = message.get("body", b"")
                if len(head) < 4:
                    head += chunk[:4 - len(head)]
                    if _utf16_or_32(head):
                        raise NotUtf8
                seen += len(chunk)
                if seen > self._max_bytes:
                    instead = self._too_large()
                elif chunk and length is None and self._spend is not None:
                    instead = self._spend(scope, len(chunk))
                if instead is not None:
                    raise BodyRefused
            return message

        async def guarded_send(message: Any) -> None:
            nonlocal started
            if instead is not None:
                return  # the app's answer to a body it could not read: ours replaces it
            started = True
            await send(message)

        try:
            await self._app(scope, counted, guarded_send)
        except Exception:
            # Whatever the app made of the missing rest of the body (the framework turns
            # it into a 400) is not the answer; anything else is the app's own error.
            if instead is None:
                raise
        if instead is not None and not started:
            await instead({"type": "http"}, _no_receive, send)

    def _too_large(self) -> JSONResponse:
        return JSONResponse(status_code=413, content={
            "error": "payload_too_large",
            "detail": f"the request body must be at most {self._max_bytes} bytes"})


async def _no_receive() -> dict[str, Any]:
    return {"type": "http.disconnect"}


def _sends_body(headers: dict[bytes, bytes]) -> bool:
    """Whether the request says it sends a body: a length above 0, or chunks."""
    return b"transfer-encoding" in headers \
        or headers.get(b"content-length", b"").strip() not in (b"", b"0")


def _coding(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The first content coding other than `identity` the request's Content-Encoding
    headers name (each may list several); None if none does."""
    for name, value in headers:
        if name == b"content-encoding":
            for coding in value.split(b","):
                coding = coding.strip()
                if coding and coding.lower() != b"identity":
                    return coding.decode("latin-1")
    return None


def compressed(coding: str) -> JSONResponse:
    """415 for a body sent compressed, naming the header, and, as RFC 9110 asks, the
    codings accepted in `Accept-Encoding`."""
    problem = (f"a body sent with Content-Encoding {coding[:40]!r} is not taken: send it"
               " uncompressed (no Content-Encoding, or identity)")
    return http_answers.field_refusal(
        415, "unsupported_media_type", [{"field": "header.Content-Encoding",
                                         "type": "unsupported_encoding", "problem": problem}],
        headers={"Accept-Encoding": "identity"})
