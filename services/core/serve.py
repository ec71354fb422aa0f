"""Serving a service's app with uvicorn on loopback by default."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import sys
from collections.abc import Callable
from types import FrameType
from typing import Any

import uvicorn
from fastapi import FastAPI

from services.core import at_start, collector, partition_producers, service_context
from services.core.settings import STAGE_TRANSACTION_SECONDS, Settings, from_environment

logger = logging.getLogger(__name__)

STARTUP_FAILURE = 3  # uvicorn's exit code when the app did not start
# After SIGTERM: the requests in flight get this long to be answered, then the stages
# finish their batch in hand (at most their transaction limit), leave their groups and
# stop their producers (each at most partition_producers.STOP_SECONDS).
REQUESTS_GRACE_SECONDS = 10
# What the deploy files give a service from SIGTERM before they kill it (compose's
# stop_grace_period, the chart's terminationGracePeriodSeconds): its requests' grace, one
# stage's batch at its transaction limit and its producers' stop, and room for the
# groups' leave and the store's close. A process's stages finish their batches at the
# same time (start_order.Parts.finish_all), so their limits do not add up; their groups'
# leaves and producers' stops come one stage after another, each quick unless the broker
# is unreachable. A kill past the grace aborts the batch in hand, which the partition's
# next owner takes again (nothing is lost), after the group's session runs out.
STOP_GRACE_SECONDS = int(REQUESTS_GRACE_SECONDS + STAGE_TRANSACTION_SECONDS
                         + partition_producers.STOP_SECONDS + 10)


def service(name: str, create_app: Callable[[Settings], FastAPI], *,
            port: Callable[[Settings], int],
            shared_port: Callable[[Settings], int | None] = lambda _settings: None) -> None:
    """A service's process, from its environment: its logs; before serving, the store's
    and the broker's outages waited out (the lifespan then finds the store migrated and
    the pipeline's topics made), a mistake in their settings exits 1; then its app served
    on `port` (and `shared_port`) until SIGTERM or SIGINT."""
    from services.core import broker_start, logs, store_start, topics

    settings = from_environment()
    logs.configure(settings, service=name)
    store_start.migrated_blocking(settings.database_url)
    broker_start.ready_blocking(settings, topics.PIPELINE)
    run(create_app(settings), settings, port=port(settings),
        shared_port=shared_port(settings))


def run(app: FastAPI, settings: Settings, *, port: int, shared_port: int | None = None
        ) -> None:
    """Serve on `port`, and also on `shared_port` (SO_REUSEPORT) with the other processes
    that serve it, until SIGTERM or SIGINT, or until a stage ends for good: then exits
    with service_context.STAGE_ENDED_EXIT once shut down."""
    # What the process made so far (modules, the app, its routes' models) lives as long
    # as it does; a stage freezes what its lifespan added when it starts consuming.
    collector.freeze_what_is_loaded()
    # uvicorn turns SIGTERM/SIGINT into the app's lifespan shutdown, where stages finish
    # their batch, commit and leave their consumer group.
    server = Server(config(app, settings, port=port))
    service_context.of(app).exit = server.exit_when_shut_down
    sockets = None if shared_port is None else _shared(settings.host, port, shared_port)
    # As uvicorn.run: a SIGINT is raised again after the graceful shutdown.
    with contextlib.suppress(KeyboardInterrupt):
        server.run(sockets=sockets)
    if server.start_ended is not None:
        sys.exit(server.start_ended)
    if not server.started:
        sys.exit(STARTUP_FAILURE)
    if server.exit_status is not None:
        sys.exit(server.exit_status)


class Server(uvicorn.Server):
    """uvicorn's server, which a stage's end also shuts down (`exit_when_shut_down`), and
    which SIGTERM or SIGINT stops while the app's lifespan starts (uvicorn waits for the
    start before it looks at them: a lifespan waiting out the broker's outage would
    keep the process until the broker came back or a kill came)."""

    def __init__(self, config: uvicorn.Config) -> None:
        self._lifespan = _LifespanStart(config.app)
        config.app = self._lifespan
        super().__init__(config)
        self.exit_status: int | None = None
        # The status of a lifespan's start that ended without serving (stopped by a
        # signal: at_start.STOPPED_EXIT); None while it starts, or once it started.
        self.start_ended: int | None = None
        self._stop_asked: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def exit_when_shut_down(self, status: int) -> None:
        """A stage ended for good (ServiceContext.stage_ended): shut down as on SIGTERM,
        then exit with `status` (the first asked)."""
        if self.exit_status is None:
            self.exit_status = status
        self.should_exit = True

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """A SIGTERM while a stage's end shuts the process down changes nothing: uvicorn
        would raise it again once shut down, and the process, killed by it, would exit
        143, hiding from its supervisor that a stage ended (70). Nor does a signal once
        the lifespan's start ended without serving (the process exits with its status).
        One while the lifespan starts ends its start (`startup`)."""
        if self.start_ended is not None:
            return
        if self.exit_status is not None and sig == signal.SIGTERM:
            return
        super().handle_exit(sig, frame)
        if self._loop is not None and self._stop_asked is not None:
            self._loop.call_soon_threadsafe(self._stop_asked.set)  # wakes the loop

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """uvicorn's start, but for a lifespan's start that ends without serving: a stop
        asked meanwhile (its parts started so far stopped, as a stop ends the wait before
        serving: "stopped while starting", exit 0, at_start.STOPPED_EXIT) or a mistake
        met (at_start.Refused: its line logged, exit 1, at_start.REFUSED_EXIT, as the
        check before serving refuses it; uvicorn's exit 3 and traceback were another
        rule). The process never listens then."""
        stop_asked = self._stop_asked = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        if self.should_exit:  # asked before the loop ran
            stop_asked.set()
        lifespan = self._lifespan
        starting = asyncio.ensure_future(self._uvicorn_startup(sockets))
        asked = asyncio.ensure_future(stop_asked.wait())
        ended = asyncio.ensure_future(lifespan.ended.wait())
        try:
            await asyncio.wait({starting, asked, ended}, return_when=asyncio.FIRST_COMPLETED)
            if asked.done() and not ended.done() and lifespan.starting:
                lifespan.stop()
                await asyncio.wait({starting, ended}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            asked.cancel()
            ended.cancel()
        if lifespan.status is None:
            # Started, or failed otherwise: on as uvicorn goes, its exit raised here.
            status = await starting
            if status is not None:
                sys.exit(status)
            return
        starting.cancel()  # uvicorn's wait for the start: it would serve once it ends
        with contextlib.suppress(asyncio.CancelledError):
            await starting
        lifespan.release()
        self.should_exit = True  # nothing to serve
        # Ended first: a signal from here on is ignored (handle_exit), not captured again.
        self.start_ended = lifespan.status
        self._captured_signals.clear()  # uvicorn would raise them again: killed, not 0
        if lifespan.status == at_start.STOPPED_EXIT:
            logger.info("stopped while starting")

    async def _uvicorn_startup(self, sockets: list[socket.socket] | None) -> int | str | None:
        """uvicorn's start, in a task of its own (`startup`); its exit (a start that
        failed: 3, a port it could not bind) returned, for `startup` to raise in the
        server's own task as uvicorn would: raised in this task, it would leave the task's
        exception unread, logged as a second traceback when the task is collected."""
        try:
            await super().startup(sockets)
        except SystemExit as exit_:
            return 1 if exit_.code is None else exit_.code
        return None


class _LifespanStart:
    """The app as uvicorn calls it, whose lifespan's start may end without serving
    (`status`): stopped (`stop`), or refused (at_start.Refused, its line logged)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.status: int | None = None  # the exit status of a start ended without serving
        self.ended = asyncio.Event()  # `status` is set: the task waits to be `release`d
        self._released = asyncio.Event()
        self._starting: asyncio.Task[Any] | None = None  # the lifespan, while it starts
        self._stopped = False

    @property
    def starting(self) -> bool:
        return self._starting is not None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        failed: list[Any] = []

        async def sending(message: Any) -> None:
            if message["type"].startswith("lifespan.startup."):
                self._starting = None
            if message["type"] == "lifespan.startup.failed":
                failed.append(message)  # said below, unless the start ended so
            else:
                await send(message)

        self._starting = asyncio.current_task()
        try:
            await self.app(scope, receive, sending)
        except asyncio.CancelledError:
            if not self._stopped:
                await self._say(failed, send)
                raise
            self.status = at_start.STOPPED_EXIT
        except at_start.Refused:
            self.status = at_start.REFUSED_EXIT
        except BaseException:
            await self._say(failed, send)
            raise
        else:
            await self._say(failed, send)
            return
        finally:
            self._starting = None
        self.ended.set()
        await self._released.wait()  # uvicorn's wait for the start cancelled meanwhile

    @staticmethod
    async def _say(failed: list[Any], send: Any) -> None:
        for message in failed:
            await send(message)

    def stop(self) -> None:
        """End the lifespan's start (it has not ended): its parts started so far are
        stopped, as when a part fails to start; then `ended`."""
        assert self._starting is not None
        self._stopped = True
        self._starting.cancel()

    def release(self) -> None:
        """Let the lifespan's task, its start ended without serving, end quietly."""
        self._released.set()


def config(app: FastAPI, settings: Settings, *, port: int) -> uvicorn.Config:
    """How a service's app is served: logged by the service's own logging (logs.py), and
    without uvicorn's line a request (its path and query hold customers' and tickets' ids,
    a platform's query its token)."""
    return uvicorn.Config(app, host=settings.host, port=port, log_config=None,
                          access_log=False, timeout_graceful_shutdown=REQUESTS_GRACE_SECONDS)


def _shared(host: str, port: int, shared_port: int) -> list[socket.socket]:
    """Both sockets, bound here and listened on once the app has started (uvicorn's
    startup), so that the kernel hands the shared port's connections only to processes
    serving it; exits as uvicorn does when an address is taken."""
    sockets: list[socket.socket] = []
    try:
        sockets.append(bound(host, port))
        sockets.append(bound(host, shared_port, shared=True))
    except OSError as error:
        for sock in sockets:
            sock.close()
        logger.error("cannot bind the service's ports", extra={
            "port": port, "shared_port": shared_port, "error": str(error)})
        sys.exit(STARTUP_FAILURE)
    logger.info("serving", extra={"host": host, "port": port, "shared_port": shared_port})
    return sockets


def bound(host: str, port: int, *, shared: bool = False) -> socket.socket:
    """A TCP socket bound to the address; `shared`: with SO_REUSEPORT, so that the other
    processes that bind it so serve it too."""
    ipv6 = ":" in host
    sock = socket.socket(socket.AF_INET6 if ipv6 else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if shared:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if ipv6:  # as asyncio binds: IPv6 only
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock
