"""The routing table API: what is in force, and replacing it without a restart."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from services.core import auth, config_files, http
from services.core.live_config import LiveConfig
from services.router import routing

api = APIRouter(prefix="/v1/routing-table", tags=["routing table"],
                dependencies=auth.ADMIN_ONLY)

LiveTable = LiveConfig[routing.RoutingTable]


def get_live(request: Request) -> LiveTable:
    live: LiveTable = request.app.state.routing_table
    return live


Live = Annotated[LiveTable, Depends(get_live)]


def describe(table: routing.RoutingTable, live: LiveTable) -> dict[str, Any]:
    rejection = live.last_rejection
    return {
        "version": table.version,
        "loaded_at": live.loaded_at.isoformat(),
        "fallback_department": table.fallback_department,
        "departments": list(table.departments),
        "routes": {segment: route.department for segment, route in table.routes.items()},
        "last_rejection": {"source": rejection.source, "error": rejection.error,
                           "at": rejection.at.isoformat()} if rejection else None,
    }


@api.get("")
async def table_in_force(live: Live) -> dict[str, Any]:
    return describe(live.current, live)


@api.put("", openapi_extra=http.YAML_BODY,
         responses={422: {"description": "The table is invalid; the old one serves"}})
async def upload_table(live: Live, text: http.YamlText) -> Any:
    """Replace the routing table without a restart; an invalid one is rejected (file,
    line, entry) and the table in force keeps serving."""
    try:
        table = live.upload(text)
    except config_files.ConfigError as exc:
        return http.config_error(exc)
    return describe(table, live)
