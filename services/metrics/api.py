"""The stats API: response times per department, and per segment side by side."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request

from services.core import auth, durations, http, topics
from services.metrics import stats
from services.metrics.store import TimelineStore

api = APIRouter(prefix="/v1", tags=["stats"])


async def get_store(request: Request) -> TimelineStore:
    store: TimelineStore = request.app.state.timelines
    return store


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


Store = Annotated[TimelineStore, Depends(get_store)]
Window = Annotated[timedelta, Depends(get_window)]
Department = Annotated[str, Path(pattern=topics.DEPARTMENT_NAME.pattern)]


@api.get("/departments/{department}/stats")
async def department_stats(department: Department, window: Window, store: Store,
                           principal: auth.DepartmentOrAdmin) -> dict[str, Any]:
    """Volume, first-response and resolution percentiles, first-response target
    attainment and backlog of one department (its own team or an admin)."""
    auth.ensure_may_act_for(principal, department)
    now = datetime.now(UTC)
    routed = await store.routed_since(now - window, department=department)
    backlog = len(await store.open_tickets(department, backlog=True))
    return {"department": department, **asdict(stats.service_stats(
        window, routed, backlog, now=now, department=department))}


@api.get("/departments", dependencies=auth.ADMIN_ONLY)
async def all_departments(window: Window, store: Store) -> dict[str, Any]:
    """The same statistics for every department that held tickets in the window."""
    now = datetime.now(UTC)
    routed = await store.routed_since(now - window)
    open_now = await store.open_per_department(backlog=True)
    names = sorted({a.department for t in routed for a in t.assignments}
                   | {t.department for t in routed if t.department} | set(open_now))
    return {"departments": [
        {"department": name, **asdict(stats.service_stats(
            window, routed, open_now.get(name, 0), now=now, department=name))}
        for name in names
    ]}


@api.get("/segments/stats", dependencies=auth.ADMIN_ONLY)
async def segment_stats(window: Window, store: Store) -> dict[str, Any]:
    """The statistics per segment, side by side, so a gap in service shows."""
    now = datetime.now(UTC)
    routed = await store.routed_since(now - window)
    open_now = await store.open_tickets(backlog=True)
    names = sorted({t.segment for t in [*routed, *open_now] if t.segment})
    return {"segments": [
        {"segment": name, **asdict(stats.service_stats(
            window, [t for t in routed if t.segment == name],
            sum(1 for t in open_now if t.segment == name), now=now))}
        for name in names
    ]}
