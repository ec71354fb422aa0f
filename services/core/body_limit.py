"""The limit on every request body of a service (but its streamed uploads): its size,
and its text (UTF-8: a body in UTF-16 or UTF-32 is refused from its first bytes)."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from fastapi.responses import JSONResponse

from services.core import http_answers


class BodyTooLarge(Exception):
    """Raised to the app, in place of the rest of a body over the limit."""


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


class BodyLimit:
    """Refuses request bodies over `max_bytes` with 413, whether or not they announce
    their length. The app never sees part of such a body: a truncated configuration file
    could be valid, and put in force. The `exempt` routes, (method, path) exactly, stream
    their bodies by design. A body in UTF-16 or UTF-32 is refused as one that is not
    UTF-8 (400), from its first bytes, whatever its content type says: every body the
    limit covers is JSON or YAML, UTF-8 text."""

    def __init__(self, app: Any, *, max_bytes: int,
                 exempt: Collection[tuple[str, str]] = ()) -> None:
        self._app = app
        self._max_bytes = max_bytes
        self._exempt = frozenset((method.upper(), path) for method, path in exempt)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or (scope["method"], scope["path"]) in self._exempt:
            await self._app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self._max_bytes:
            await self._too_large(send)
            return
        seen = 0
        exceeded = started = False
        head = b""  # the body's first four bytes, however the client splits them

        async def counted() -> Any:
            nonlocal seen, exceeded, head
            if exceeded:
                raise BodyTooLarge
            message = await receive()
            if message["type"] == "http.request":
                chunk = message.get("body", b"")
                if len(head) < 4:
                    head += chunk[:4 - len(head)]
                    if _utf16_or_32(head):
                        raise NotUtf8
                seen += len(chunk)
                if seen > self._max_bytes:
                    exceeded = True
                    raise BodyTooLarge
            return message

        async def guarded_send(message: Any) -> None:
            nonlocal started
            if exceeded:
                return  # the app's answer to a body it could not read: a 413 replaces it
            started = True
            await send(message)

        try:
            await self._app(scope, counted, guarded_send)
        except Exception:
            # Whatever the app made of the missing rest of the body (the framework turns
            # it into a 400) is not the answer; anything else is the app's own error.
            if not exceeded:
                raise
        if exceeded and not started:
            await self._too_large(send)

    async def _too_large(self, send: Any) -> None:
        response = JSONResponse(status_code=413, content={
            "error": "payload_too_large",
            "detail": f"the request body must be at most {self._max_bytes} bytes"})
        await response({"type": "http"}, _no_receive, send)


async def _no_receive() -> dict[str, Any]:
    return {"type": "http.disconnect"}
