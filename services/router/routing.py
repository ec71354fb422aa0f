"""Routing policy: which department serves a segment. Pure decision code."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from services.core import topics
from services.core.config_files import ConfigError, line_of

Reason = Literal["route", "fallback"]


@dataclass(frozen=True)
class RoutingTable:
    version: str
    routes: Mapping[str, str]  # segment -> department
    fallback_department: str

    @property
    def departments(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys([*self.routes.values(), self.fallback_department]))


@dataclass(frozen=True)
class RoutingDecision:
    department: str
    reason: Reason


def decide(segment: str, table: RoutingTable) -> RoutingDecision:
    """The department for a segment; a segment no route claims goes to the fallback."""
    department = table.routes.get(segment)
    if department is None:
        return RoutingDecision(table.fallback_department, "fallback")
    return RoutingDecision(department, "route")


def parse_table(document: Mapping[str, Any], *, source: str, version: str) -> RoutingTable:
    """Validate a routing file already read as YAML (with `__line__` marks)."""
    fallback = document.get("fallback_department")
    if not isinstance(fallback, str):
        raise ConfigError(source, line_of(document), "fallback_department",
                          "a fallback department is required (a department name)")
    _check_department(fallback, source, line_of(document), "fallback_department")
    entries = document.get("routes")
    if not isinstance(entries, list) or not entries:
        raise ConfigError(source, line_of(document), "routes",
                          "routes must be a non-empty list of {segment, department}")
    routes: dict[str, str] = {}
    for position, entry in enumerate(entries, start=1):
        line = line_of(entry)
        if not isinstance(entry, dict):
            raise ConfigError(source, line, f"routes[{position}]",
                              "each route must be a mapping with segment and department")
        unknown = sorted(set(entry) - {"segment", "department", "__line__"})
        if unknown:
            raise ConfigError(source, line, f"routes[{position}]",
                              f"unknown keys {unknown}; accepted: segment, department")
        segment, department = entry.get("segment"), entry.get("department")
        name = str(segment) if segment else f"routes[{position}]"
        if not isinstance(segment, str) or not segment:
            raise ConfigError(source, line, name, "segment must be a non-empty string")
        if not isinstance(department, str):
            raise ConfigError(source, line, name, "department must be a department name")
        _check_department(department, source, line, name)
        if segment in routes:
            raise ConfigError(source, line, name, f"segment {segment!r} is routed twice")
        routes[segment] = department
    return RoutingTable(version=version, routes=routes, fallback_department=fallback)


def _check_department(name: str, source: str, line: int | None, entry: str) -> None:
    try:
        topics.department_queue(name)
    except ValueError as exc:
        raise ConfigError(source, line, entry, str(exc)) from exc
