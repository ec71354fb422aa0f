"""The dead-letter API: see what the stages could not process, and replay it once fixed."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from services.core import auth, dead_letter_reading, http, request_bodies, service_context
from services.core.settings import Settings
from services.router import dead_letter_records, dead_letters

logger = logging.getLogger(__name__)

api = APIRouter(prefix="/v1/dead-letters", tags=["dead letters"],
                dependencies=auth.ADMIN_ONLY)


async def get_settings(context: service_context.Context) -> Settings:
    return context.settings


SettingsDep = Annotated[Settings, Depends(get_settings)]
DeadLetterId = Annotated[str, Field(pattern=dead_letter_reading.ID.pattern, max_length=32,
                                    description="One in tickets.dlq: "
                                                + dead_letter_reading.ID.words)]
TopicName = Annotated[str, Field(min_length=1, max_length=249)]
ErrorClass = Annotated[str, Field(min_length=1, max_length=200)]

FAILURES: dict[int | str, dict[str, Any]] = {
    503: {"description": "Kafka did not answer; retry after Retry-After"},
    409: {"description": "Another replay ran at the same time; repeat the request"},
}


class DeadLetterPage(BaseModel):
    dead_letters: list[dict[str, Any]]
    next: str | None = Field(description="Pass as `since` for the next page; null at the end")


class ReplayRequest(request_bodies.RequestBody):
    """Either `ids`, or a filter (`source_topic`, `error_class`, both must match)."""

    # Either ids or a filter, never both, never neither, as `Selection` checks: said in
    # the schema too, for generated clients and fuzzers. As in `Selection`, an empty
    # `ids` or a null filter field counts as not given.
    model_config = ConfigDict(json_schema_extra={"oneOf": [
        {"required": ["ids"], "properties": {"ids": {"type": "array", "minItems": 1}}},
        {"anyOf": [
            {"required": ["source_topic"], "properties": {"source_topic": {"type": "string"}}},
            {"required": ["error_class"], "properties": {"error_class": {"type": "string"}}},
        ]},
    ]})

    ids: list[DeadLetterId] = Field(default_factory=list, max_length=dead_letter_records.MAX_LIMIT)
    source_topic: TopicName | None = None
    error_class: ErrorClass | None = None
    limit: int = Field(default=dead_letter_records.MAX_LIMIT, ge=1,
                       le=dead_letter_records.MAX_LIMIT,
                       description="At most this many replayed by a filter; repeat for more")


class ReplayCounts(BaseModel):
    replayed: int
    skipped_already_replayed: int
    not_found: int
    unreplayable: int = Field(description="No source topic a stage reads in its headers,"
                              " that topic gone, or the record unreadable")


@api.get("", response_model=DeadLetterPage, responses=FAILURES)
async def list_dead_letters(
    settings: SettingsDep,
    source_topic: Annotated[TopicName | None, Query()] = None,
    error_class: Annotated[ErrorClass | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=dead_letter_records.MAX_LIMIT)] = 100,
    since: Annotated[str | None, Query(pattern=dead_letter_reading.ID.pattern,
                                       description="Only dead letters after this id")] = None,
    include_value: Annotated[bool, Query(
        description="Include the record's value (may hold personal data)")] = False,
) -> DeadLetterPage | JSONResponse:
    """Dead letters in (partition, offset) order, without their values unless asked."""
    try:
        found = await dead_letters.list_dead_letters(
            settings, source_topic=source_topic, error_class=error_class, limit=limit,
            since=since, include_value=include_value)
    except dead_letters.Unavailable as exc:
        return _unavailable(settings, exc)
    return DeadLetterPage(dead_letters=found,
                          next=found[-1]["id"] if len(found) == limit else None)


@api.post("/replay", response_model=ReplayCounts, responses=FAILURES)
async def replay(body: ReplayRequest, settings: SettingsDep) -> ReplayCounts | JSONResponse:
    """Re-produce the selected dead letters to their source topics with their original
    key, value and headers; each dead letter is replayed at most once, however often
    this is asked."""
    try:
        selection = dead_letter_records.Selection(
            ids=tuple(body.ids), source_topic=body.source_topic,
            error_class=body.error_class, limit=body.limit)
    except dead_letter_records.InvalidSelection as exc:
        raise http.InvalidField(f"body.{exc.field}", exc.problem) from exc
    try:
        result = await dead_letters.replay(settings, selection)
    except dead_letters.Unavailable as exc:
        return _unavailable(settings, exc)
    except dead_letters.ReplayConflict:
        return JSONResponse(status_code=409, content={
            "error": "conflict",
            "detail": "another replay ran at the same time and nothing of this one was"
                      " replayed; repeat the request (nothing is replayed twice)"})
    return ReplayCounts(**result.counts())


def _unavailable(settings: Settings, error: Exception) -> JSONResponse:
    logger.warning("dead letters: Kafka unavailable", extra={"error": str(error)})
    return JSONResponse(
        status_code=503, headers={"Retry-After": str(settings.retry_after_seconds)},
        content={"error": "unavailable",
                 "detail": "Kafka did not answer; nothing was changed, retry later"})
