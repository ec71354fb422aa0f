"""Waiting in a test for what runs in the background: one way to look, bounded."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable


async def until(condition: Callable[[], bool | Awaitable[bool]], *, within: float = 10.0,
                every: float = 0.01, looks: int | None = None) -> None:
    """Wait for `condition` (its answer awaited when it is one to await), looking every
    `every` s (0: at each turn of the event loop), `looks` times at most (`within /
    every` unless given): a bound on a wait that ends far sooner unless what it waits
    for is broken (on a loaded machine the wait may be longer)."""
    tries = looks if looks is not None else round(within / every)
    for _ in range(tries):
        held = condition()
        if inspect.isawaitable(held):
            held = await held
        if held:
            return
        await asyncio.sleep(every)
    raise AssertionError(f"the condition never held in {tries} looks {every} s apart")


async def waits_out(job: Callable[[asyncio.Event], Awaitable[None]],
                    waited: Callable[[], int], *, times: int = 2) -> None:
    """Run `job` (a background task's, given its stop event) until it has waited out
    what it meets `times` times (`waited`: how often so far, as its log says), checking
    that it still runs then (waited out in the task, not ended), then stop it."""
    stop = asyncio.Event()
    task = asyncio.create_task(job(stop))
    try:
        await until(lambda: waited() >= times or task.done(), within=60.0)
        assert not task.done()
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
