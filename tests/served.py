"""An app served by uvicorn on a loopback port, as the services serve it, for the tests
that need a real HTTP server (a client hanging up, a command-line client)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from fastapi import FastAPI

from services.core import serve
from tests import waits


@asynccontextmanager
async def served(app: FastAPI) -> AsyncIterator[str]:
    """The app served on a port of its own until the block ends; its URL."""
    sock = serve.bound("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False,
                                           lifespan="off", timeout_graceful_shutdown=5))
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        await waits.until(lambda: server.started or serving.done())
        assert server.started
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await serving
        sock.close()
