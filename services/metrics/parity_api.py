"""The service parity API: the service each protected group got, side by side."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query

from services.core import auth, durations, http, report_turns
from services.metrics import parity_store, service
from services.metrics.bootstrap import MetricsContext

api = APIRouter(prefix="/v1/parity", tags=["stats"])


@api.get("/stats", responses=report_turns.IN_PROGRESS)
async def parity_stats(
    metrics: MetricsContext,
    principal: auth.Admin,
    turn: report_turns.ReportTurn,
    window: Annotated[str | None, Query(
        description="15m, 1h, 24h, 7d ... (at most 366d); default PARITY_WINDOW",
        json_schema_extra={"pattern": durations.WINDOW_PATTERN})] = None,
) -> dict[str, Any]:
    """Per protected attribute and group: tickets, first-response percentiles, targets
    met, escalation rate and the ratio of each to the best-served group. Groups with
    fewer tickets than the minimum are listed as suppressed, without figures."""
    try:
        length = durations.parse_window(window) if window is not None else None
    except ValueError as exc:
        raise http.InvalidField("query.window", str(exc)) from exc
    config = parity_store.ParityConfig.of(metrics.settings, length)
    async with turn.taken(principal):
        parities = await service.parity_stats(metrics.timelines, metrics.bands, config,
                                              now=datetime.now(UTC))
    return {"window_seconds": int(config.window.total_seconds()),
            "threshold": config.policy.threshold,
            "minimum_group_size": config.policy.minimum_group_size,
            "attributes": [asdict(p) for p in parities]}
