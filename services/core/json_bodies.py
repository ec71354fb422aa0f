"""How every service's routes read a JSON request body: as FastAPI does, but with
json_text's reader, so that a key given twice in one object is a 422 naming it
(`body.<path>`), where the last one was kept silently."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi.routing import APIRoute, request_response
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from services.core import json_text

REPEATED_KEY = "repeated_key"


class RepeatedKeys(HTTPException):
    """A JSON body with a key given more than once in one of its objects: each such key,
    where it is (`body.<path>`), in the order of the text. An HTTPException, so that
    FastAPI's reading of the body lets it through to the error handlers (http.py)."""

    def __init__(self, repeated: json_text.RepeatedKeys) -> None:
        self.problems = [_problem(path, count) for path, count in repeated.repeated]
        super().__init__(422, detail=self.problems[0]["problem"])


def _problem(path: json_text.Path, count: int) -> dict[str, str]:
    return {"field": ".".join(("body", *map(str, path))), "type": REPEATED_KEY,
            "problem": f"the key {str(path[-1])!r} is given {count} times in one object:"
                       " keys must be unique in every JSON object (which one was meant is"
                       " not for us to guess); send it once"}


class UniqueKeysRequest(Request):
    """A request whose JSON body (`json()`, as FastAPI reads a body) refuses a repeated
    key."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            try:
                self._json = json_text.loads(await self.body())
            except json_text.RepeatedKeys as repeated:
                raise RepeatedKeys(repeated) from None
        return self._json


_Handler = Callable[[Request], Coroutine[Any, Any, Response]]
_READS_UNIQUE_KEYS = "_reads_unique_keys"


def read_unique_keys(route: APIRoute) -> None:
    """Have `route` read its JSON body as UniqueKeysRequest does: its handler, as
    FastAPI builds it for the route itself and for each app that includes its router
    (lazily, at the first request), is given such a request. Once per route: a module's
    router, and so its routes, are shared by every app built with it."""
    if route.body_field is None or getattr(route, _READS_UNIQUE_KEYS, False):
        return
    handler_of = route.get_route_handler

    def get_route_handler() -> _Handler:
        handler = handler_of()

        async def unique_keys(request: Request) -> Response:
            return await handler(UniqueKeysRequest(request.scope, request.receive))
        return unique_keys

    route.get_route_handler = get_route_handler  # type: ignore[method-assign]
    setattr(route, _READS_UNIQUE_KEYS, True)
    route.app = request_response(route.get_route_handler())
