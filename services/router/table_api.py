"""The routing table API: what is in force, replacing it without a restart (a new
version in the store), a dry run, and its history (services/core/config_history_api.py)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Response

from services.core import (
    auth,
    config_files,
    config_history_api,
    config_preconditions,
    config_store,
    http,
    topics,
)
from services.core.live_config import NotAdmitted
from services.router import bootstrap, overflow, priority, routing, service, table_changes

api = APIRouter(prefix="/v1/routing-table", tags=["routing table"],
                dependencies=auth.ADMIN_ONLY)

LiveTable = bootstrap.LiveTable

# The body of an upload: the routing table file, YAML (JSON is YAML too). The schema says
# all the loader checks entry by entry; what it cannot say (departments defined, CEL
# that compiles, no overflow loop, durations over zero and at most 366 days) is refused
# with 422 naming the line and the entry.
_NAME = {"type": "string", "pattern": topics.DEPARTMENT_NAME.pattern}
_DURATION = {"type": "string", "description": "like 15m, 4h, 2d or 1h30m; at most 366d",
             "pattern": r"^\s*(\d+d(\d+h)?(\d+m)?(\d+s)?|\d+h(\d+m)?(\d+s)?|\d+m(\d+s)?|\d+s)"
                        r"\s*$"}
_PRIORITY = {"type": ["integer", "null"], "minimum": priority.HIGHEST,
             "maximum": priority.LOWEST, "description": "1 is the most urgent"}
_ANYTHING = {"description": "free text for people; not read"}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


def _mapping(properties: dict[str, Any], *required: str) -> dict[str, Any]:
    return {"type": "object", "additionalProperties": False, "required": list(required),
            "properties": properties}


_LEVEL = {"priority": _PRIORITY,
          **{target: _nullable(_DURATION) for target in priority.TARGET_KEYS}}
_TIERS = _nullable({"type": "object", "additionalProperties": False, "properties": {
    tier: _mapping(_LEVEL) for tier in priority.TIERS}})


_REFINEMENT = _mapping({
    "name": {"type": "string", "pattern": r"\S"},
    "when": {"type": "string", "pattern": r"\S", "description": "a CEL condition over"
             " `ticket` (kind, channel, language, attributes) and `tier`"},
    "department": _nullable(_NAME), **_LEVEL, "description": _ANYTHING}, "name", "when")
_ROUTE = _mapping({
    "segment": {"type": "string", "minLength": 1}, "department": _NAME, **_LEVEL,
    "tiers": _TIERS, "refinements": _nullable({"type": "array", "items": _REFINEMENT}),
    "description": _ANYTHING}, "segment", "department")
_CALENDAR = _mapping({
    "time_zone": {"type": "string", "description": "an IANA time zone"},
    "hours": {"type": "object", "additionalProperties": {"type": "string"},
              "description": "weekdays to opening hours, e.g. mon-fri: '08:00-18:00'"},
    "holidays": {"type": ["array", "null"], "items": {"description": "a date, 2025-12-25"}},
}, "time_zone", "hours")
_COUNT_MAXIMUM = {"type": ["integer", "null"], "minimum": 1,
                  "maximum": overflow.LARGEST_MAXIMUM}
_OVERFLOW = _mapping({
    "to": _NAME,
    "max_backlog": _COUNT_MAXIMUM,
    "max_lag": _COUNT_MAXIMUM,
    "max_predicted_first_response": _nullable(_DURATION),
    "resume_below": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
}, "to")
_DEPARTMENT = _nullable(_mapping({
    "calendar": _nullable(_CALENDAR),
    "after_hours": {"anyOf": [{"type": "null"}, {"const": "pause"},
                              _mapping({"route_to": _NAME}, "route_to")]},
    "overflow": _nullable(_OVERFLOW), "escalation_to": _nullable(_NAME),
    "second_escalation": _nullable(_mapping({"after": _DURATION, "to": _nullable(_NAME)},
                                            "after")),
    "description": _ANYTHING}))
TABLE_SCHEMA: dict[str, Any] = _mapping({
    "version": {"description": "a label; a digest of the content is added"},
    "fallback_department": _NAME,
    "priority_aging": {"anyOf": [{"type": "null"}, {"const": "off"}, _DURATION]},
    "warning_share": {"anyOf": [{"type": "null"}, {"const": "off"}, {
        "type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1,
        "description": "a warning at this share of each target (0.75: at 75%)"}]},
    "priority_targets": _nullable({
        "type": "object", "propertyNames": {"pattern": f"^[{priority.HIGHEST}-{priority.LOWEST}]$"},
        "additionalProperties": _mapping({target: _nullable(_DURATION)
                                          for target in priority.TARGET_KEYS}),
        "description": "the targets a ticket takes when its priority is changed to this"
                       " one (POST /v1/tickets/{id}/priority)"}),
    "defaults": _nullable(_mapping({**_LEVEL, "tiers": _TIERS})),
    "routes": {"type": "array", "minItems": 1, "items": _ROUTE},
    "departments": _nullable({"type": "object", "propertyNames": _NAME,
                              "additionalProperties": _DEPARTMENT}),
}, "fallback_department", "routes")
TABLE_BODY: dict[str, Any] = {"requestBody": {"required": True, "content": {
    media_type: {"schema": TABLE_SCHEMA} for media_type in ("application/yaml",
                                                           "application/json")}}}


async def get_live(router: bootstrap.RouterContext) -> LiveTable:
    return router.table


Live = Annotated[LiveTable, Depends(get_live)]


def describe(table: routing.RoutingTable, live: LiveTable) -> dict[str, Any]:
    rejection = live.last_rejection
    return {
        "version": table.version,
        "version_id": live.version_id,
        "refused_version_id": live.refused_id,  # the store's, when this instance cannot read it
        "loaded_at": live.loaded_at.isoformat(),
        "fallback_department": table.fallback_department,
        "departments": list(table.departments),
        "routes": {segment: route.department for segment, route in table.routes.items()},
        "last_rejection": {"source": rejection.source, "error": rejection.error,
                           "at": rejection.at.isoformat()} if rejection else None,
    }


@api.get("", responses=config_preconditions.ETAG_HEADER)
async def table_in_force(live: Live, response: Response) -> dict[str, Any]:
    """The table in force here, and its id in the store (the ETag names it too)."""
    config_preconditions.show_version(response, live.version_id)
    return describe(live.current, live)


ForceQuery = Annotated[bool, Query(description=(
    "Put the table in force even though it removes departments that hold open tickets"
    " (409 otherwise): the removal is logged, and their tickets are not moved"))]


@api.put("", openapi_extra=TABLE_BODY,
         responses={**config_preconditions.ETAG_HEADER,
                    **config_preconditions.PRECONDITION_FAILED,
                    409: {"description": "`departments_hold_open_tickets`: the table removes"
                                         " departments that hold open tickets (named in"
                                         " `open_tickets`, with their counts); nothing"
                                         " changed. Move their tickets first, or send it"
                                         " again with `force=true`"},
                    422: {"description": "The table is invalid (the old one serves), or a"
                                         " malformed If-Match"}})
async def upload_table(live: Live, router: bootstrap.RouterContext, principal: auth.Admin,
                       text: http.YamlText, response: Response,
                       if_match: config_preconditions.IfMatch,
                       comment: config_history_api.CommentQuery = "",
                       force: ForceQuery = False) -> Any:
    """Put a routing table in force without a restart, kept in the store as a new
    version with the credential and `comment`, and announced to every instance (the file
    is not written); an invalid one is rejected (file, line, entry) and the table in
    force keeps serving. With If-Match, only while the version it names is in force
    (else 412). One that removes departments holding open tickets is refused (409)
    unless `force=true`."""
    try:
        put = await service.put_table_in_force(
            text, table=live, routed=router.routed, source=live.upload_source,
            comment=comment, author=config_history_api.author_of(principal),
            removal_confirmed=force, if_in_force=if_match)
    except config_files.ConfigError as exc:
        return http.config_error(exc)
    except config_store.NotInForce as exc:
        return config_preconditions.precondition_failed(exc, what="routing table")
    except NotAdmitted as exc:
        raise HTTPException(409, detail=exc.body) from exc
    version, changed = put
    config_preconditions.show_version(response, version.version_id)
    return {**describe(live.current, live), "changed": changed}


@api.post("/dry-run", openapi_extra=TABLE_BODY,
          responses={422: {"description": "The table is invalid (file, line, entry)"}})
async def dry_run(live: Live, router: bootstrap.RouterContext, text: http.YamlText) -> Any:
    """Validate a candidate table and compare it with the one in force (segments that
    would go to another department, departments added or removed and how many open
    tickets each removed one holds, the diff of the texts); nothing is put in force or
    kept."""
    try:
        candidate = await live.validate(text, source="candidate (dry run)")
    except config_files.ConfigError as exc:
        return http.config_error(exc)
    current, in_force_text = live.in_force_here()
    return {"valid": True, "version": candidate.version, "in_force": current.version,
            **table_changes.changes(current, candidate),
            "departments_removed_open_tickets": await service.open_in_removed(
                current, candidate, routed=router.routed),
            "diff": config_store.text_diff(in_force_text, text, "in force", "candidate")}


async def rollback_admission(router: bootstrap.RouterContext, force: ForceQuery = False
                             ) -> service.RemovalCheck:
    """A rollback is admitted as an upload is: not removing departments that hold open
    tickets unless `force=true`."""
    return service.RemovalCheck(router.routed, confirmed=force)


api.include_router(config_history_api.routes(get_live, what="routing table",
                                             admission=rollback_admission))
