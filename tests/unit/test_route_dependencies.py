"""route_dependencies.of_kind: a matched route's dependencies of a kind, in the order the
framework solves them (a dependency's own before it, first to last), the inclusion's,
the router's and the route's: as FastAPI calls them, recorded, on an app called as ASGI
(no sockets)."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Depends, FastAPI, Request

from services.core import route_dependencies


class Recorded:
    """A dependency that records its call, by name, in `calls`."""

    def __init__(self, name: str, calls: list[str]) -> None:
        self.name, self.calls = name, calls

    async def __call__(self) -> None:
        self.calls.append(self.name)


def depending_on(own: Recorded, name: str, calls: list[str]) -> Recorded:
    """A Recorded that is solved after `own`, a dependency of its own."""
    class After(Recorded):
        async def __call__(self, _own: None = Depends(own)) -> None:
            self.calls.append(self.name)
    return After(name, calls)


async def test_in_the_order_the_framework_solves_them() -> None:
    calls: list[str] = []

    def recorded(name: str) -> Recorded:
        return Recorded(name, calls)

    router = APIRouter(dependencies=[Depends(recorded("router's"))])
    nested = depending_on(depending_on(recorded("its own's own"), "its own", calls),
                          "a parameter's", calls)

    @router.get("/v1/recorded", dependencies=[Depends(recorded("route's"))])
    async def endpoint(request: Request, _first: None = Depends(nested),
                       _last: None = Depends(recorded("the last parameter's"))
                       ) -> dict[str, list[str]]:
        found = route_dependencies.of_kind(request.scope, Recorded)
        return {"solved": calls, "found": [dependency.name for dependency in found]}

    app = FastAPI()
    app.include_router(router, dependencies=[Depends(recorded("inclusion's"))])
    answer = orjson.loads(await call(app, "/v1/recorded"))
    assert answer["solved"] == ["inclusion's", "router's", "route's", "its own's own",
                                "its own", "a parameter's", "the last parameter's"]
    assert answer["found"] == answer["solved"]


async def call(app: FastAPI, path: str) -> bytes:
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "GET", "scheme": "http", "path": path, "raw_path": path.encode(),
             "query_string": b"", "root_path": "", "headers": [],
             "server": ("test", 80), "client": ("test", 1)}
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    [start] = [m for m in sent if m["type"] == "http.response.start"]
    assert start["status"] == 200
    return b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
