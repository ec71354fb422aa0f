"""The probes every service answers, `/healthz` and `/readyz`, and its `/metrics`. Each
probe's answers, its 503 among them, are models: what is sent and what the OpenAPI
declares are one definition. A probe's 503 is a state in its own shape, not an error
answer (`{"error", "detail"}`), and asks no `Retry-After`: a probe asks again on its own
period."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, Literal

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field


class Alive(BaseModel):
    status: Literal["ok"]


class Exiting(BaseModel):
    """A stage ended for good: the process exits, to be restarted."""

    status: Literal["exiting"]
    ended: list[str] = Field(description="the stages that ended for good")


class Ready(BaseModel):
    status: Literal["ready"]


class NotReady(BaseModel):
    """The service cannot do its work: its broker, store or main stage not running, or
    some of its background tasks or stages down."""

    status: Literal["not_ready"]
    down: list[str] = Field(default_factory=list, description=(
        "the background tasks and stages down (a stage that ended for good among them);"
        " absent when none is"))


def _unavailable(model: type[BaseModel]) -> dict[int | str, dict[str, Any]]:
    """A probe's 503 as the OpenAPI declares it (services/core/http_docs.py keeps it),
    described by its model's docstring: one definition."""
    return {503: {"model": model, "description": inspect.getdoc(model)}}


EXITING = _unavailable(Exiting)
NOT_READY = _unavailable(NotReady)


def routes(*, ready: Callable[[], bool], down: Callable[[], list[str]],
           ended: Callable[[], list[str]]) -> APIRouter:
    """`/readyz` answers 503 unless `ready()`, naming what `down()` says is down
    (background tasks, stages ended). `/healthz` answers 503 naming the stages that
    `ended()` for good, which the process exits for, to be restarted."""
    health = APIRouter(tags=["health"])

    @health.get("/healthz", summary="The process is alive (no stage ended for good)",
                response_model=Alive, responses=EXITING)
    async def alive() -> JSONResponse:
        stages_ended = ended()
        if stages_ended:
            return _answer(503, Exiting(status="exiting", ended=stages_ended))
        return _answer(200, Alive(status="ok"))

    @health.get("/readyz", summary="The service can do its work (broker and stage running)",
                response_model=Ready, responses=NOT_READY)
    async def is_ready() -> JSONResponse:
        tasks_down = down()
        if ready() and not tasks_down:
            return _answer(200, Ready(status="ready"))
        return _answer(503, NotReady(status="not_ready", down=tasks_down))

    @health.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return health


def _answer(status: int, answer: BaseModel) -> JSONResponse:
    # `down` only when some is (a field at its default left out).
    return JSONResponse(status_code=status, content=answer.model_dump(exclude_defaults=True))
