"""The dependencies the framework will solve for the route an ASGI scope matched, read
before it solves them (and before it reads the request's body): for a middleware to ask
now what the route's dependencies would answer later (`auth.refuse_role`,
`auth.spend_body_bytes`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, TypeVar

T = TypeVar("T")

# A route's dependencies of each kind, found once and kept on the object holding its
# dependency tree (the route, or its inclusion's context), with that tree: they live and
# die with the route, app by app. FastAPI's Dependant can be neither hashed nor weakly
# referenced, nor its routes hashed: no WeakKeyDictionary.
_FOUND = "_routing_dependencies_by_kind"


def of_kind(scope: Any, kind: type[T]) -> tuple[T, ...]:
    """The matched route's dependencies that are instances of `kind` (a router's, its
    own, or one a dependency of its depends on), in the order the framework solves them
    (a dependency's own before it, first to last); none for no route matched. Found once
    a route: its dependencies are fixed when it is built, and asked for before every
    body, and every chunk of a chunked one."""
    solved = _solved_route(scope)
    if solved is None:
        return ()
    dependant = solved.dependant
    found: tuple[Any, dict[type, tuple[Any, ...]]] | None = getattr(solved, _FOUND, None)
    if found is None or found[0] is not dependant:
        found = (dependant, {})
        setattr(solved, _FOUND, found)
    by_kind = found[1]
    if kind not in by_kind:
        by_kind[kind] = tuple(_calls_in(dependant, kind))
    return by_kind[kind]


def _calls_in(dependant: Any, kind: type[T]) -> Iterator[T]:
    for dependency in dependant.dependencies:
        yield from _calls_in(dependency, kind)
        if isinstance(dependency.call, kind):
            yield dependency.call


def _solved_route(scope: Any) -> Any:
    """What the framework solves the dependencies of for the matched route: for a route
    of an included router, its inclusion's context (the dependencies given where it was
    included, and those of the routers it is included in, with its own; the pinned
    FastAPI's scope entry), which the route's own lacks; else the route; None for a
    route without dependencies (not FastAPI's)."""
    included = scope.get("fastapi", {}).get("effective_route_context")
    if getattr(included, "dependant", None) is not None:
        return included
    route = scope.get("route")
    return route if getattr(route, "dependant", None) is not None else None
