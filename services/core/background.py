"""Background tasks of a service: each supervised (a task that fails, or ends before the
service stops, is restarted after a growing pause and counted), reported in `/readyz`
while down or crash-looping, and all stopped together at shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from prometheus_client import Counter, Gauge

logger = logging.getLogger(__name__)

Job = Callable[[asyncio.Event], Awaitable[None]]
T = TypeVar("T")

RESTARTS = Counter("routing_background_task_restarts_total",
                   "Background tasks restarted after they failed or ended early", ["task"])
UP = Gauge("routing_background_task_up",
           "1 while a background task runs steadily, 0 while it is down or crash-looping",
           ["task"])
RUNS_FAILED = Counter("routing_background_runs_failed_total",
                      "Runs of a periodic background task that failed (the task goes on:"
                      " what it measures or decides is stale until a run succeeds)",
                      ["task"])


@dataclass(frozen=True)
class Backoff:
    """The pause before a restart: `first` after one failure, doubling with each failure
    in a row, never longer than `longest`."""

    first: float = 1.0
    longest: float = 30.0

    def pause(self, failures_in_a_row: int) -> float:
        return min(self.longest, self.first * 2.0 ** min(failures_in_a_row - 1, 32))


@dataclass
class FailuresInARow:
    """A reading loop's failures in a row (the broker away), and how long to pause after
    the last: growing (`backoff`), so that an outage costs a line a pause, not a second."""

    backoff: Backoff = field(default_factory=Backoff)
    count: int = 0

    def failed(self) -> float:
        """Note a failure; the pause before the next try."""
        self.count += 1
        return self.backoff.pause(self.count)

    def succeeded(self) -> None:
        self.count = 0

    async def pause_after(self, error: Exception, stop: asyncio.Event, *,
                          warning: str, by: logging.Logger) -> None:
        """Note a failure, warn (`warning` on `by`, the reader's logger) with the error's
        class, the failures in a row and the pause, then pause (until `stop`)."""
        seconds = self.failed()
        by.warning(warning, extra={"error": type(error).__name__,
                                   "failures_in_a_row": self.count,
                                   "pause_seconds": seconds})
        await pause(stop, seconds)


@dataclass
class _Health:
    failures_in_a_row: int = 0
    running_since: float | None = None  # None: waiting to be restarted


class BackgroundTasks:
    """Supervises the background jobs of a service. A job gets the stop event and runs
    until it is set; one that fails or ends early is restarted after `backoff`. A
    restarted job counts as healthy again once it has run `steady_after` seconds."""

    def __init__(self, *, backoff: Backoff = Backoff(), steady_after: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._health: dict[str, _Health] = {}
        self._backoff = backoff
        self._steady_after = steady_after
        self._clock = clock

    def start(self, name: str, job: Job) -> None:
        health = self._health[name] = _Health()
        UP.labels(name).set_function(lambda: float(self._is_up(health)))
        RUNS_FAILED.labels(name)  # exported at 0 from the start: a first failure shows
        RESTARTS.labels(name)  # as an increase
        self._tasks.append(asyncio.create_task(self._supervised(name, job, health),
                                               name=name))

    def down(self) -> list[str]:
        """The tasks that are not running steadily: waiting for a restart, or restarted
        too recently to tell a recovery from a crash loop."""
        return [name for name, health in self._health.items() if not self._is_up(health)]

    def _is_up(self, health: _Health) -> bool:
        if health.running_since is None:
            return self._stop.is_set()
        return health.failures_in_a_row == 0 or \
            self._clock() - health.running_since >= self._steady_after

    async def _supervised(self, name: str, job: Job, health: _Health) -> None:
        while True:
            health.running_since = self._clock()
            try:
                await job(self._stop)
            except Exception:
                logger.exception("background task failed", extra={"task": name})
            else:
                if self._stop.is_set():
                    return
                logger.error("background task ended before the service stopped",
                             extra={"task": name})
            if self._stop.is_set():
                return
            steady = self._clock() - health.running_since >= self._steady_after
            health.failures_in_a_row = 1 if steady else health.failures_in_a_row + 1
            health.running_since = None
            pause = self._backoff.pause(health.failures_in_a_row)
            logger.warning("background task restarts after a pause", extra={
                "task": name, "pause_seconds": pause,
                "failures_in_a_row": health.failures_in_a_row})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), pause)
            if self._stop.is_set():
                return
            RESTARTS.labels(name).inc()

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)


async def pause(stop: asyncio.Event, seconds: float) -> None:
    """Until `stop` is set, or `seconds` have passed."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


async def until_either(stop: asyncio.Event, event: asyncio.Event, *,
                       seconds: float | None = None) -> None:
    """Until `stop` or `event` is set, or `seconds` have passed (None: no bound)."""
    waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(event.wait())]
    try:
        await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()


async def every(seconds: float, action: Callable[[], Awaitable[object]],
                stop: asyncio.Event, *, once_more_on_stop: bool = False,
                wait: Callable[[asyncio.Event, float], Awaitable[None]] = pause) -> None:
    """Run `action` every `seconds` until `stop`; a failed run is logged and counted under
    the name of the background task running it, not fatal. `wait` waits out an interval
    (a unit test's records the intervals asked for)."""
    current = asyncio.current_task()
    task = current.get_name() if current is not None else "unnamed"
    while not stop.is_set():
        await wait(stop, seconds)
        if stop.is_set() and not once_more_on_stop:
            return
        try:
            await action()
        except Exception:
            RUNS_FAILED.labels(task).inc()
            logger.exception("periodic task failed", extra={"task": task})


class Overran(TimeoutError):
    """`within`'s work did not finish in its time: told apart from a TimeoutError the
    work raised itself (a store statement that got no answer in its limit is an outage
    of the store, not the work's own time running out)."""


async def within(seconds: float, work: Coroutine[Any, Any, T]) -> T:
    """`work`'s result; Overran if it has not finished in `seconds`. It is then
    abandoned: cancelled, not waited for (a client stuck on a dead broker may hang in
    its cancellation too)."""
    task = asyncio.ensure_future(work)
    done, _ = await asyncio.wait({task}, timeout=seconds)
    if not done:
        task.cancel()
        task.add_done_callback(retrieved)
        raise Overran
    return task.result()


def retrieved(future: asyncio.Future[Any]) -> None:
    """A done callback that takes a future's exception, so that asyncio does not log it
    as never retrieved (for futures nobody awaits)."""
    if not future.cancelled():
        future.exception()
