"""What every service's HTTP API shares: error shape, health and /metrics."""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import date, datetime
from http import HTTPStatus
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from fastapi.telemetry import TelemetryConfig
from pydantic import AfterValidator, AwareDatetime, BeforeValidator, WithJsonSchema
from starlette.exceptions import HTTPException

from services.core import (
    allowed_methods,
    auth,
    body_bytes,
    body_limit,
    config_files,
    db,
    health,
    http_answers,
    http_docs,
    json_bodies,
    moments,
    request_bodies,
    unicode_errors,
)

logger = logging.getLogger(__name__)


MAX_FIELD_ERRORS = http_answers.MAX_FIELD_ERRORS
_SEND_JSON = http_answers.SEND_JSON


def telemetry_off() -> TelemetryConfig:
    """FastAPI's own OpenTelemetry off, for every service's `FastAPI(telemetry=...)`: no
    spans, request metrics or logs, and no exporters added at start from the environment
    (FASTAPI_OTEL_AUTO_CONFIGURE=true, which would otherwise switch it on). Its logs record
    validation failures and exception messages, which may quote a request's personal data;
    the services' metrics are their own (Prometheus), their logs the project's. With all
    three signals off FastAPI also skips its look-up of the providers on each request."""
    return {"tracing": False, "metrics": False, "logs": False, "operation_spans": False,
            "auto_configure": False}


def field_errors(error: RequestValidationError) -> list[dict[str, str]]:
    """Each bad field: where it is and what was wrong (the message says what is accepted),
    the first MAX_FIELD_ERRORS, then how many more."""
    details = error.errors()
    named = [_named(detail, error.body) for detail in details[:MAX_FIELD_ERRORS]]
    if len(details) > MAX_FIELD_ERRORS:
        named.append(http_answers.too_many(len(details) - MAX_FIELD_ERRORS))
    return named


def _named(detail: Mapping[str, Any], body: Any) -> dict[str, str]:
    if detail["type"] == "json_invalid":
        # FastAPI puts the character the reader stopped at in `loc`: a position, not a
        # path (`body.64`); said in the message, as a line and column.
        return {"field": "body", "problem": _not_json(detail, body), "type": "json_invalid"}
    return {"field": ".".join(str(part) for part in detail["loc"]),
            "problem": _problem(detail), "type": detail["type"]}


def _not_json(detail: Mapping[str, Any], text: Any) -> str:
    """Why the text is not JSON, and where (the line, column and character, from 1)."""
    why = (detail.get("ctx") or {}).get("error", "")
    position = detail["loc"][1] if len(detail["loc"]) > 1 else None
    if isinstance(position, int) and isinstance(text, str):
        line = text.count("\n", 0, position) + 1
        column = position - text.rfind("\n", 0, position)
        why = (f"{why or 'not JSON'} at line {line}, column {column} (character"
               f" {position + 1} of the body)")
    return f"not valid JSON: {why}; {_SEND_JSON}" if why else f"not valid JSON; {_SEND_JSON}"


def _problem(detail: Mapping[str, Any]) -> str:
    """pydantic's message, with what FastAPI's JSON reading left out: that a body must be
    sent as JSON."""
    if detail["type"] == "model_attributes_type" and tuple(detail["loc"]) == ("body",):
        return f"{detail['msg']}; {_SEND_JSON}"
    if detail["type"] == "missing" and tuple(detail["loc"]) == ("body",):
        return f"no body was sent; {_SEND_JSON}"  # not pydantic's "Field required"
    context = detail.get("ctx") or {}
    if isinstance(detail.get("input"), str) and detail["type"] in ("too_long", "too_short"):
        # Text whose length is checked after its own validator: pydantic counts "items".
        if detail["type"] == "too_long":
            return (f"Text should have at most {context['max_length']} characters, not"
                    f" {context['actual_length']}")
        least = context["min_length"]
        return f"Text should have at least {least} character{'s' if least != 1 else ''}"
    return request_bodies.message_of(detail)


def _moment(value: object) -> object:
    return value if isinstance(value, datetime) else moments.parse(value)


def _day(value: object) -> object:
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    return moments.parse_date(value)


# Dates and times in request bodies are text: pydantic would also take a number as
# seconds since 1970, which the schema does not say and no client means. A moment is
# RFC 3339 text whose UTC moment is a date (services/core/moments.py), as the imports
# take it; a datetime comes from our own code. A day is YYYY-MM-DD text
# (moments.parse_date), as the customer import and a calendar's holidays take it, not
# pydantic's date (which also takes a time of day, bytes, a number); a date comes from
# our own code.
Timestamp = Annotated[AwareDatetime, BeforeValidator(_moment),
                      AfterValidator(moments.within_utc),
                      WithJsonSchema({"type": "string", "format": "date-time"})]
Day = Annotated[date, BeforeValidator(_day),
                WithJsonSchema({"type": "string", "format": "date"})]


class InvalidField(Exception):
    """A request field that passed its type but not the service's own check."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(problem)
        self.field = field
        self.problem = problem


async def _invalid_request(_request: Request, error: Exception) -> JSONResponse:
    if isinstance(error, InvalidField):
        fields = [{"field": error.field, "problem": error.problem, "type": "value_error"}]
    else:
        assert isinstance(error, RequestValidationError)
        fields = field_errors(error)
    return invalid(fields)


def sent_once(request: Request, *names: str) -> None:
    """InvalidField naming the first of the headers `names` sent more than once: which
    one the caller meant is not for us to guess (FastAPI reads the first)."""
    for name in names:
        count = len(request.headers.getlist(name))
        if count > 1:
            raise InvalidField(f"header.{name}", f"sent {count} times: send it once (which"
                                                 " one was meant is not for us to guess)")


def invalid(fields: Sequence[Mapping[str, str]]) -> JSONResponse:
    """422 `invalid_request`: the fields refused, and the first of them in `detail`."""
    return http_answers.field_refusal(422, "invalid_request", fields)


def _unreadable(detail: str) -> JSONResponse:
    """400: a body that cannot be read as text or JSON. `field` is kept beside `fields`
    for the clients that read it (the one field: `body`)."""
    return http_answers.field_refusal(400, "bad_request", [
        {"field": "body", "problem": detail, "type": "unreadable_body"}],
        detail=detail, field="body")


async def _http_error(request: Request, error: Exception) -> JSONResponse:
    """Any other refusal (a handler's 404 or 409, the framework's 400, 404 or 405) in the
    one error shape: `{"error": code, "detail": text}`, never FastAPI's nested
    `{"detail": {...}}`."""
    assert isinstance(error, HTTPException)
    unreadable = _unreadable_body(error)
    if unreadable is not None:
        return _unreadable(unreadable)
    if isinstance(error, json_bodies.RepeatedKeys):
        return invalid(http_answers.bounded(error.problems))
    if isinstance(error.detail, dict) and "error" in error.detail:
        content = error.detail
    else:
        code = HTTPStatus(error.status_code).phrase.lower().replace(" ", "_").replace("-", "_")
        content = {"error": code, "detail": str(error.detail)}
    headers = dict(error.headers or {})
    if error.status_code == 405:
        found = allowed_methods.of_path(request.scope, request.app.routes)
        if found is not None:
            path, methods = found
            headers["Allow"] = ", ".join(methods)
            # The framework's words ("Method Not Allowed") say nothing of what is.
            content = {**content, "detail": f"{path} takes {_either(methods)},"
                                            f" not {request.method}"}
    return JSONResponse(status_code=error.status_code, content=content, headers=headers)


def _either(methods: list[str]) -> str:
    return methods[0] if len(methods) == 1 else f"{', '.join(methods[:-1])} or {methods[-1]}"


async def _store_unavailable(request: Request, error: Exception) -> JSONResponse:
    answer = http_answers.store_unavailable(request.app, request.url.path, error)
    if answer is None:
        raise error  # a bug: the server error it is
    return answer


def install(app: FastAPI, *, ready: Callable[[], bool],
            max_body_bytes: int = body_bytes.MAX_BODY_BYTES,
            down: Callable[[], list[str]] = list, ended: Callable[[], list[str]] = list,
            streamed_uploads: Collection[tuple[str, str]] = ()) -> None:
    """Add the shared error handlers, a body size limit, `/healthz`, `/readyz` and
    `/metrics` (health.routes: `ready`, `down` and `ended` say what they answer) to a
    service. `streamed_uploads` are the (method, path) of the routes exempt from the body
    limit: bulk uploads that stream their body, and read it only once their caller is
    authenticated."""
    for route in allowed_methods.method_routes(app.router.routes):
        if isinstance(route, APIRoute):
            json_bodies.read_unique_keys(route)
    # A credential's role is checked (auth.refuse_role), then its bytes spent
    # (auth.spend_body_bytes), before its body is read.
    app.add_middleware(body_limit.BodyLimit, max_bytes=max_body_bytes, exempt=streamed_uploads,
                       admit=auth.refuse_role, spend=auth.spend_body_bytes)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(InvalidField, _invalid_request)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(body_limit.NotUtf8, _not_utf8)
    http_docs.install(app)
    auth.install(app)
    for store_error in db.STORE_ERRORS:
        app.add_exception_handler(store_error, _store_unavailable)
    app.include_router(health.routes(ready=ready, down=down, ended=ended))
    # Last: the routes of every included router are known.
    allowed_methods.concrete_paths_first(app)


# The header of an answer that asks the caller to retry later (OpenAPI; a 503's and a
# 429's get it wherever documented).
RETRY_AFTER = http_docs.RETRY_AFTER

YAML_BODY: dict[str, Any] = {"requestBody": {"required": True, "content": {
    "application/yaml": {"schema": {"type": "string",
                                    "description": "the configuration file, as YAML"}}}}}


async def yaml_text(request: Request) -> str:
    try:
        return (await request.body()).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidField("body", "the file must be UTF-8 text") from exc


YamlText = Annotated[str, Depends(yaml_text)]


def config_error(error: config_files.ConfigError) -> JSONResponse:
    """A configuration file that was refused: the file, line, entry and problem."""
    return JSONResponse(status_code=422, content={
        "error": "invalid_configuration", "detail": str(error), "file": error.path,
        "line": error.line, "rule": error.entry, "entry": error.entry,
        "problem": error.problem})


def _unreadable_body(error: HTTPException) -> str | None:
    """Why the framework could not read a request's JSON body (its 400 says only "There
    was an error parsing the body"): not UTF-8, or nested deeper than the reader goes.
    None for any other refusal."""
    if error.status_code != 400:
        return None
    cause = error.__cause__
    if isinstance(cause, UnicodeDecodeError):
        return f"the body is not UTF-8 text ({unicode_errors.problem(cause)}); {_SEND_JSON}"
    if isinstance(cause, body_limit.NotUtf8):
        return body_limit.NOT_UTF8
    if isinstance(cause, RecursionError):
        return ("the body's JSON is nested too deeply (objects and arrays within each other"
                f" past what the reader takes; ours go a few levels deep); {_SEND_JSON}")
    return None


async def _not_utf8(_request: Request, _error: Exception) -> JSONResponse:
    """A body refused from its first bytes, where the route read it itself (a YAML
    upload); where FastAPI reads it, its 400 carries the same answer (_unreadable_body)."""
    return _unreadable(body_limit.NOT_UTF8)


