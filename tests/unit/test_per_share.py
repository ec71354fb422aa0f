"""batches.PerShare: a transform's per-batch state, each share's its own."""

from __future__ import annotations

import asyncio

from services.core import batches


async def test_each_share_task_sees_only_the_batch_it_started() -> None:
    state = batches.PerShare("test_batch", list[str])
    both_started = asyncio.Barrier(2)

    async def share(name: str) -> list[str]:
        state.start().append(name)
        await both_started.wait()  # the other share has started its own batch meanwhile
        state.current().append(f"{name} again")
        return state.current()

    first, second = await asyncio.gather(asyncio.create_task(share("a")),
                                         asyncio.create_task(share("b")))
    assert first == ["a", "a again"]
    assert second == ["b", "b again"]


async def test_a_new_start_drops_what_a_failed_attempt_left() -> None:
    state = batches.PerShare("test_batch", list[str])
    state.current().append("left by a failed attempt")
    assert state.start() == []
    assert state.start(["given"]) == ["given"]
    assert state.current() == ["given"]


async def test_two_transforms_keep_their_batches_apart() -> None:
    one, other = batches.PerShare("one", list[str]), batches.PerShare("other", list[str])
    one.start().append("one's")
    assert other.current() == []
