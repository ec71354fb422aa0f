"""Serving a service's app with uvicorn on loopback by default."""

from __future__ import annotations

import uvicorn
from fastapi import FastAPI

from services.core import collector
from services.core.settings import Settings


def run(app: FastAPI, settings: Settings, *, port: int) -> None:
    # What the process made so far (modules, the app, its routes' models) lives as long
    # as it does; a stage freezes what its lifespan added when it starts consuming.
    collector.freeze_what_is_loaded()
    # uvicorn turns SIGTERM/SIGINT into the app's lifespan shutdown, where stages finish
    # their batch, commit and leave their consumer group.
    uvicorn.run(app, host=settings.host, port=port, log_config=None, access_log=False,
                timeout_graceful_shutdown=10)
