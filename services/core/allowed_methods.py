"""The methods a path allows, as OpenAPI reads the routes: a 405 names the methods of
the path that answers (in its detail and its `Allow` header), and a concrete path
(`/v1/credentials/me`) answers 405 for the methods only a templated path that also
matches it has (`/v1/credentials/{credential_id}`)."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.exceptions import HTTPException
from starlette.routing import Match, Route


def of_path(scope: Any, routes: Any) -> tuple[str, list[str]] | None:
    """The path (template) that answers the request `scope`, as documented, and its
    methods, sorted: what a 405 says, and its `Allow` header; None where no route's path
    matches."""
    matched = _matching_routes(scope, routes)
    if not matched:
        return None
    # As in OpenAPI, a concrete path comes before a templated one that also matches
    # (`/customers/import` before `/customers/{customer_id}`).
    path = min(matched, key=lambda route: len(route.param_convertors)).path
    return path, sorted({method for route in matched if route.path == path
                         for method in route.methods or ()})


def method_routes(routes: Any) -> list[Route]:
    """The routes that answer methods, in order, included routers' too."""
    found: list[Route] = []
    for route in routes:
        included = getattr(getattr(route, "original_router", route), "routes", None)
        if included is not None:
            found += method_routes(included)
        elif isinstance(route, Route) and route.methods:
            found.append(route)
    return found


def concrete_paths_first(app: FastAPI) -> None:
    """Give each concrete path of `app` a 405 for the methods a templated path that also
    matches it has and it has not. Call it once every router is included."""
    routes = method_routes(app.router.routes)
    concrete: dict[str, set[str]] = {}
    for route in routes:
        if not route.param_convertors:
            concrete.setdefault(route.path, set()).update(route.methods or ())
    for path, methods in concrete.items():
        taken = {method for route in routes
                 if route.param_convertors and route.path_regex.fullmatch(path)
                 for method in route.methods or ()} - methods
        if taken:
            app.router.routes.insert(0, _NotAMethodOfThePath(path, sorted(taken)))


def _matching_routes(scope: Any, routes: Any) -> list[Route]:
    """The routes whose path matches the request's, in order: the framework's own 405
    names the methods of the first only."""
    return [route for route in method_routes(routes)
            if not isinstance(route, _NotAMethodOfThePath)
            and route.matches(scope)[0] is not Match.NONE]


class _NotAMethodOfThePath(Route):
    """Answers 405 for methods a concrete path does not have, which a templated path
    would otherwise take: as in OpenAPI, `/v1/credentials/me` is not one of
    `/v1/credentials/{credential_id}`, so `DELETE /v1/credentials/me` is a 405, not a
    422 for a malformed id (nor `PUT /v1/customers/import` a customer named "import")."""

    def __init__(self, path: str, methods: Collection[str]) -> None:
        super().__init__(path, _method_not_allowed, methods=list(methods),
                         include_in_schema=False)


async def _method_not_allowed(_request: Request) -> Response:
    raise HTTPException(405)
