"""One start/stop order for every service's parts.

A service starts its parts in this order, and stops them in reverse:
the store (migrated, then opened), the publishers (and the topics they write), the
background tasks, the followers (stages that only follow events), the main stage last,
so that nothing consumes before what it writes to is there, and at shutdown the main
stage finishes its batch while everything it calls still runs.

At shutdown every stage is first told to finish (each finishes its batch in hand and takes
no more, all at the same time), then the parts stop in reverse: a process with several
stages waits for its slowest batch, not for the sum of them.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from enum import IntEnum
from typing import TypeVar

T = TypeVar("T")
Step = Callable[[], Awaitable[object]]
Signal = Callable[[], None]


class Phase(IntEnum):
    STORE = 1
    PUBLISHERS = 2
    BACKGROUND = 3
    FOLLOWERS = 4
    STAGE = 5


class OutOfOrder(RuntimeError):
    """A part started in an earlier phase than one already started (a bug)."""


class Parts:
    """The parts started so far; `started` stops them in reverse."""

    def __init__(self, stack: contextlib.AsyncExitStack) -> None:
        self._stack = stack
        self._phase = Phase.STORE
        self._finishing: list[Signal] = []

    def _enter(self, phase: Phase) -> None:
        if phase < self._phase:
            raise OutOfOrder(f"a {phase.name.lower()} part started after the"
                             f" {self._phase.name.lower()} ones")
        self._phase = phase

    async def start(self, phase: Phase, start: Step | None = None, *,
                    stop: Step | None = None, finish: Signal | None = None) -> None:
        """Run `start` now; `stop` on the way out, in reverse order. `finish` (a stage's:
        finish the batch in hand, take no more) is called when the way out begins,
        before any part stops."""
        self._enter(phase)
        if finish is not None:
            self._finishing.append(finish)
        if start is not None:
            await start()
        if stop is not None:
            self._stack.push_async_callback(stop)

    def finish_all(self) -> None:
        """Tell every stage to finish its batch in hand (the way out begins)."""
        for finish in self._finishing:
            finish()

    async def enter(self, phase: Phase, part: AbstractAsyncContextManager[T]) -> T:
        """Open `part` now (an adapter's own async context); closed in reverse order."""
        self._enter(phase)
        return await self._stack.enter_async_context(part)


@contextlib.asynccontextmanager
async def started() -> AsyncIterator[Parts]:
    """`async with lifespan.started() as parts:` start each part in its phase; on the way
    out (or when one fails to start) those started are stopped, last first."""
    async with contextlib.AsyncExitStack() as stack:
        parts = Parts(stack)
        try:
            yield parts
        finally:
            parts.finish_all()
