"""What a candidate routing table would change against the one in force (a dry run).
Pure code."""

from __future__ import annotations

from typing import Any

from services.router import routing


def changes(current: routing.RoutingTable,
            candidate: routing.RoutingTable) -> dict[str, Any]:
    """Where each segment would go under the candidate, where that differs."""
    segments = sorted(set(current.routes) | set(candidate.routes))

    def department(table: routing.RoutingTable, segment: str) -> str:
        route = table.routes.get(segment)
        return route.department if route else table.fallback_department

    return {
        "moved_segments": {segment: {"from": department(current, segment),
                                     "to": department(candidate, segment)}
                           for segment in segments
                           if department(current, segment) != department(candidate, segment)},
        "departments_added": sorted(set(candidate.departments) - set(current.departments)),
        "departments_removed": departments_removed(current, candidate),
        "fallback_department": candidate.fallback_department,
    }


def departments_removed(current: routing.RoutingTable,
                        candidate: routing.RoutingTable) -> list[str]:
    """The departments of the table in force the candidate no longer has."""
    return sorted(set(current.departments) - set(candidate.departments))
