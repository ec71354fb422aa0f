"""A service leaves the objects it made before serving out of the garbage collector's
passes (services/core/serve.py)."""

from __future__ import annotations

import gc
from typing import Any

import pytest
from fastapi import FastAPI

from services.core import serve
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
