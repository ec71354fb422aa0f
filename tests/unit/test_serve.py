"""A service leaves the objects it made before serving out of the garbage collector's
passes (services/core/serve.py)."""

from __future__ import annotations

import gc
from typing import Any

import pytest
from fastapi import FastAPI

from services.core import serve, service_context
from services.core.settings import Settings


def test_what_exists_before_serving_is_kept_out_of_collections(
        monkeypatch: pytest.MonkeyPatch) -> None:
    frozen_when_served: list[int] = []

    def serving(server: serve.uvicorn.Server, *_args: Any, **_kwargs: Any) -> None:
        frozen_when_served.append(gc.get_freeze_count())
        server.started = True

    monkeypatch.setattr(serve.uvicorn.Server, "run", serving)
    gc.unfreeze()
    try:
        serve.run(FastAPI(), Settings(), port=1)
    finally:
        gc.unfreeze()
    [frozen] = frozen_when_served
    assert frozen > 1000  # the interpreter's and the app's objects, not a handful


def test_an_app_that_did_not_start_exits_as_uvicorn_does(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(serve.uvicorn.Server, "run", lambda *_args, **_kwargs: None)
    with pytest.raises(SystemExit) as exited:
        serve.run(FastAPI(), Settings(), port=1)
    assert exited.value.code == serve.STARTUP_FAILURE


def test_a_stage_ended_for_good_shuts_down_and_exits_70(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A stage's end asks the shutdown uvicorn does on SIGTERM (`should_exit`), and the
    process exits 70 (EX_SOFTWARE) once it is done, for its supervisor to restart it."""
    app = FastAPI()
    asked: list[bool] = []

    def serving(server: serve.uvicorn.Server, *_args: Any, **_kwargs: Any) -> None:
        server.started = True
        service_context.of(app).stage_ended("router-tracker")
        asked.append(server.should_exit)

    monkeypatch.setattr(serve.uvicorn.Server, "run", serving)
    with pytest.raises(SystemExit) as exited:
        serve.run(app, Settings(), port=1)
    assert asked == [True]
    assert exited.value.code == service_context.STAGE_ENDED_EXIT == 70


def test_a_shutdown_no_stage_asked_exits_0(monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGTERM's shutdown: serve.run returns, and the process exits 0."""
    monkeypatch.setattr(serve.uvicorn.Server, "run",
                        lambda server, *_args, **_kwargs: setattr(server, "started", True))
    serve.run(FastAPI(), Settings(), port=1)
