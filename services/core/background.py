"""Background tasks of a service, stopped together at shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

logger = logging.getLogger(__name__)

Job = Callable[[asyncio.Event], Awaitable[None]]
T = TypeVar("T")


class BackgroundTasks:
    def __init__(self) -> None:
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self, name: str, job: Job) -> None:
        self._tasks.append(asyncio.create_task(self._guarded(name, job), name=name))

    async def _guarded(self, name: str, job: Job) -> None:
        try:
            await job(self._stop)
        except Exception:
            logger.exception("background task %s failed", name)

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)


async def every(seconds: float, action: Callable[[], Awaitable[object]],
                stop: asyncio.Event, *, once_more_on_stop: bool = False) -> None:
    """Run `action` every `seconds` until `stop`; a failed run is logged, not fatal."""
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), seconds)
        if stop.is_set() and not once_more_on_stop:
            return
        try:
            await action()
        except Exception:
            logger.exception("periodic task failed")


async def within(seconds: float, work: Coroutine[Any, Any, T]) -> T:
    """`work`'s result; TimeoutError if it has not finished in `seconds`. It is then
    abandoned: cancelled, not waited for (a client stuck on a dead broker may hang in
    its cancellation too)."""
    task = asyncio.ensure_future(work)
    done, _ = await asyncio.wait({task}, timeout=seconds)
    if not done:
        task.cancel()
        task.add_done_callback(retrieved)
        raise TimeoutError
    return task.result()


def retrieved(future: asyncio.Future[Any]) -> None:
    """A done callback that takes a future's exception, so that asyncio does not log it
    as never retrieved (for futures nobody awaits)."""
    if not future.cancelled():
        future.exception()
