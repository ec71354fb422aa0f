"""Serving a service's app with uvicorn on loopback by default."""

from __future__ import annotations

import contextlib
import socket
import sys

import uvicorn
from fastapi import FastAPI

from services.core import collector
from services.core.settings import Settings

STARTUP_FAILURE = 3  # uvicorn's exit code when the app did not start


def run(app: FastAPI, settings: Settings, *, port: int) -> None:
    # What the process made so far (modules, the app, its routes' models) lives as long
    # as it does; a stage freezes what its lifespan added when it starts consuming.
    collector.freeze_what_is_loaded()
    # uvicorn turns SIGTERM/SIGINT into the app's lifespan shutdown, where stages finish
    # their batch, commit and leave their consumer group.
    config = uvicorn.Config(app, host=settings.host, port=port, log_config=None,
                            access_log=False, timeout_graceful_shutdown=10)
    server = uvicorn.Server(config)
    # Shared: bound here, listened on once the app has started (uvicorn's startup), so
    # that the kernel hands the shared port's connections only to processes serving it.
    sockets = None if settings.http_shared_port is None else [
        bound(settings.host, port),
        bound(settings.host, settings.http_shared_port, shared=True)]
    # As uvicorn.run: a SIGINT is raised again after the graceful shutdown.
    with contextlib.suppress(KeyboardInterrupt):
        server.run(sockets=sockets)
    if not server.started:
        sys.exit(STARTUP_FAILURE)


def bound(host: str, port: int, *, shared: bool = False) -> socket.socket:
    """A TCP socket bound to the address; `shared`: with SO_REUSEPORT, so that the other
    processes that bind it so serve it too."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET,
                         socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if shared:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock
