"""Serving a service's app with uvicorn on loopback by default."""

from __future__ import annotations

import gc

import uvicorn
from fastapi import FastAPI

from services.core.settings import Settings


def keep_startup_objects() -> None:
    """Leave what the process made so far (its modules, the app, the models of its routes:
    some 150,000 objects, all living as long as the process) out of the cyclic garbage
    collector's passes. A full pass walks every tracked object with the event loop
    stopped: 55-60 ms for a service, paid again whenever enough of a batch's objects
    outlive their generation. Those made later are collected as before."""
    gc.freeze()


def run(app: FastAPI, settings: Settings, *, port: int) -> None:
    keep_startup_objects()
    # uvicorn turns SIGTERM/SIGINT into the app's lifespan shutdown, where stages finish
    # their batch, commit and leave their consumer group.
    uvicorn.run(app, host=settings.host, port=port, log_config=None, access_log=False,
                timeout_graceful_shutdown=10)
