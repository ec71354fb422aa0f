"""The stats API: response times per department, and per segment side by side
(service.department_stats, all_departments, segment_stats)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query

from services.core import auth, durations, http, report_turns, topics
from services.metrics import departments, service, stats
from services.metrics.bootstrap import MetricsContext

api = APIRouter(prefix="/v1", tags=["stats"])


async def get_window(
    # The schema's pattern says all that parse_window checks; parse_window checks it, so
    # that a refusal says what is accepted rather than quote the pattern.
    window: Annotated[str, Query(description="15m, 1h, 24h, 7d ... (at most 366d)",
                                 json_schema_extra={"pattern": durations.WINDOW_PATTERN},
                                 )] = "24h",
) -> timedelta:
    try:
        return durations.parse_window(window)
    except ValueError as exc:
        raise http.InvalidField("query.window", str(exc)) from exc


Window = Annotated[timedelta, Depends(get_window)]
Department = Annotated[str, Path(pattern=topics.DEPARTMENT_NAME.pattern)]


UNKNOWN_DEPARTMENT: dict[int | str, dict[str, Any]] = {404: {
    "description": "`not_found`: no such department: the routing table in force does not"
                   " name it and no ticket it held is kept. `detail` says so in the"
                   " router's words and lists the table's departments, also given as"
                   " `departments`, to any caller, before a department credential's scope"
                   " is checked (a typo of its own name is told as one);"
                   f" those that held tickets in a window: {departments.LISTED_AT}. A"
                   " department of the table with no tickets is answered, with zeros"}}


@api.get("/departments/{department}/stats",
         responses={**report_turns.IN_PROGRESS, **UNKNOWN_DEPARTMENT})
async def department_stats(department: Department, window: Window, metrics: MetricsContext,
                           principal: auth.DepartmentOrAdmin, turn: report_turns.ReportTurn,
                           ) -> dict[str, Any]:
    """Volume, first-response and resolution percentiles, first-response target
    attainment and backlog of one department (its own team or an admin)."""
    table = await metrics.in_table()
    if table is not None and department in table:
        # Known without a search: the credential's scope is judged at once, not after
        # its own report waiting ahead (a 403, not a 429).
        auth.ensure_may_act_for(principal, department)
    # In the caller's turn: a name the table lacks is searched among the kept timelines
    # (a typo polled by a dashboard would otherwise read them at every poll, unbounded).
    async with turn.taken(principal):
        # Looked up before the credential's scope is checked, as the router does
        # (unknown_departments): a typo of one's own department is told as a typo.
        unknown = await service.unknown_department(metrics.timelines, table, department)
        if unknown is not None:
            raise HTTPException(404, detail=unknown.answer())
        auth.ensure_may_act_for(principal, department)
        found = await service.department_stats(metrics.timelines, department, window,
                                               now=datetime.now(UTC))
    return {"department": department, **asdict(found)}


@api.get("/departments", responses=report_turns.IN_PROGRESS)
async def all_departments(window: Window, metrics: MetricsContext, principal: auth.Admin,
                          turn: report_turns.ReportTurn) -> dict[str, Any]:
    """The same statistics for every department that held tickets in the window."""
    async with turn.taken(principal):
        found = await service.all_departments(metrics.timelines, window,
                                              now=datetime.now(UTC))
    return {"departments": _named("department", found)}


@api.get("/segments/stats", responses=report_turns.IN_PROGRESS)
async def segment_stats(window: Window, metrics: MetricsContext, principal: auth.Admin,
                        turn: report_turns.ReportTurn) -> dict[str, Any]:
    """The statistics per segment, side by side, so a gap in service shows."""
    async with turn.taken(principal):
        found = await service.segment_stats(metrics.timelines, window,
                                            now=datetime.now(UTC))
    return {"segments": _named("segment", found)}


def _named(key: str, found: Mapping[str, stats.ServiceStats]) -> list[dict[str, Any]]:
    """Each department's or segment's statistics, with its name under `key`."""
    return [{key: name, **asdict(figures)} for name, figures in found.items()]
