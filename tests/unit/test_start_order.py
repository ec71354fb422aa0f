"""One start/stop order for every service (services/core/start_order.py) and the typed
context their apps hold (services/core/service_context.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
from fastapi import FastAPI

from services.core import service_context, start_order
from services.core.settings import Settings
from services.core.start_order import Phase


class TestStartOrder:
    async def test_parts_stop_in_the_reverse_of_their_start(self) -> None:
        log: list[str] = []

        def step(name: str) -> Callable[[], Awaitable[None]]:
            async def run() -> None:
                log.append(name)
            return run

        @asynccontextmanager
        async def store() -> AsyncIterator[str]:
            log.append("open store")
            yield "store"
            log.append("close store")

        async with start_order.started() as parts:
            assert await parts.enter(Phase.STORE, store()) == "store"
            await parts.start(Phase.PUBLISHERS, stop=step("close publisher"))
            await parts.start(Phase.BACKGROUND, stop=step("stop tasks"))
            await parts.start(Phase.FOLLOWERS, step("start follower"),
                              stop=step("stop follower"))
            await parts.start(Phase.STAGE, step("start stage"), stop=step("stop stage"))
        assert log == ["open store", "start follower", "start stage", "stop stage",
                       "stop follower", "stop tasks", "close publisher", "close store"]

    async def test_every_stage_is_told_to_finish_before_any_part_stops(self) -> None:
        """A process's stages finish their batches in hand at the same time: the follower
        is told to finish before the main stage's stop waits for its batch."""
        log: list[str] = []

        def step(name: str) -> Callable[[], Awaitable[None]]:
            async def run() -> None:
                log.append(name)
            return run

        def signal(name: str) -> Callable[[], None]:
            return lambda: log.append(name)

        async with start_order.started() as parts:
            await parts.start(Phase.BACKGROUND, stop=step("stop tasks"))
            await parts.start(Phase.FOLLOWERS, stop=step("stop follower"),
                              finish=signal("finish follower"))
            await parts.start(Phase.STAGE, stop=step("stop stage"), finish=signal("finish stage"))
            log.append("serving")
        assert log == ["serving", "finish follower", "finish stage", "stop stage",
                       "stop follower", "stop tasks"]

    async def test_stages_are_told_to_finish_when_a_later_part_fails_to_start(self) -> None:
        log: list[str] = []

        async def fail() -> None:
            raise RuntimeError("no broker")

        async def stop_follower() -> None:
            log.append("stop follower")

        with pytest.raises(RuntimeError, match="no broker"):
            async with start_order.started() as parts:
                await parts.start(Phase.FOLLOWERS, stop=stop_follower,
                                  finish=lambda: log.append("finish follower"))
                await parts.start(Phase.STAGE, fail)
        assert log == ["finish follower", "stop follower"]

    async def test_a_part_out_of_order_is_refused_and_those_started_stop(self) -> None:
        stopped: list[str] = []

        async def stop_stage() -> None:
            stopped.append("stage")

        with pytest.raises(start_order.OutOfOrder, match="store part started after"):
            async with start_order.started() as parts:
                await parts.start(Phase.STAGE, stop=stop_stage)
                await parts.start(Phase.STORE)
        assert stopped == ["stage"]


class TestServiceContext:
    def test_a_provided_part_is_found_by_its_type(self) -> None:
        app = FastAPI()
        context = service_context.install(app, Settings())
        context.provide("a part")
        assert service_context.of(app) is context
        assert context.part(str) == "a part"
        with pytest.raises(LookupError, match="provides no int"):
            context.part(int)

    def test_not_ready_before_the_main_stage_started(self) -> None:
        context = service_context.install(FastAPI(), Settings())
        assert not context.ready()
        assert context.down() == []
