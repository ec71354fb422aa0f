"""What every service's HTTP API shares: error shape, health and /metrics."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from services.core import config_files


def field_errors(error: RequestValidationError) -> list[dict[str, str]]:
    """Each bad field: where it is and what was wrong (the message says what is accepted)."""
    return [
        {
            "field": ".".join(str(part) for part in detail["loc"]),
            "problem": detail["msg"],
            "type": detail["type"],
        }
        for detail in error.errors()
    ]


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
    return JSONResponse(status_code=422, content={"error": "invalid_request", "fields": fields})


def install(app: FastAPI, *, ready: Callable[[], bool]) -> None:
    """Add the shared error handlers, `/healthz`, `/readyz` and `/metrics` to a service."""
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(InvalidField, _invalid_request)
    health = APIRouter(tags=["health"])

    @health.get("/healthz", summary="The process is alive")
    async def alive() -> dict[str, str]:
        return {"status": "ok"}

    @health.get("/readyz", summary="The service can do its work (broker and stage running)")
    async def is_ready() -> JSONResponse:
        ok = ready()
        return JSONResponse(status_code=200 if ok else 503,
                            content={"status": "ready" if ok else "not_ready"})

    @health.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    app.include_router(health)


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
