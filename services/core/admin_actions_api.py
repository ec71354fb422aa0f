"""What admins did to credentials and webhook endpoints, and who, over HTTP: for admins
(admin_actions.py)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from services.core import admin_actions, auth, http, service_context

api = APIRouter(prefix="/v1/admin-actions", tags=["admin actions"],
                dependencies=auth.ADMIN_ONLY)
MAX_LISTED = 1000


def get_actions(context: service_context.Context) -> admin_actions.AdminActions:
    return context.part(admin_actions.AdminActions)


@api.get("", response_model=list[admin_actions.AdminAction])
async def listed(actions: Annotated[admin_actions.AdminActions, Depends(get_actions)],
                 since: Annotated[http.Timestamp | None, Query(
                     description="Only the actions from this moment on")] = None,
                 limit: Annotated[int, Query(ge=1, le=MAX_LISTED, description=(
                     "At most this many, the newest"))] = 100) -> Any:
    """Credentials issued and revoked, webhook endpoints registered, changed, deleted and
    their secrets rotated: when, by which credential (or the command line), on what,
    newest first. The routing table's and the segment rules' changes are their versions'
    history (`/v1/routing-table/versions`, `/v1/segment-rules/versions`)."""
    return await actions.listed(since=since, limit=limit)
