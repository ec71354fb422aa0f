"""Supervised background tasks (services/core/background.py): a task that fails or ends
early is restarted after a growing, bounded pause, counted in Prometheus, and reported
down (in `/readyz` too) until it runs steadily again."""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
from collections.abc import Callable

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import REGISTRY

from services.core import background, service_context
from services.core.settings import Settings
from services.metrics import app as metrics_app
from services.router import app as router_app
from services.segmenter import app as segmenter_app
from tests import waits

QUICK = background.Backoff(first=0.01, longest=0.04)
_names = itertools.count()


def task_name() -> str:
    return f"test-task-{next(_names)}"


def restarts(name: str) -> float:
    return REGISTRY.get_sample_value("routing_background_task_restarts_total",
                                     {"task": name}) or 0.0


def up(name: str) -> float | None:
    return REGISTRY.get_sample_value("routing_background_task_up", {"task": name})


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def failing(times: int, runs: list[int]) -> background.Job:
    """A job that fails its first `times` runs, then runs until stopped."""

    async def job(stop: asyncio.Event) -> None:
        runs.append(1)
        if len(runs) <= times:
            raise RuntimeError("broken")
        await stop.wait()

    return job


until = functools.partial(waits.until, within=5.0, every=0.005)


class TestBackoff:
    def test_the_pause_doubles_from_one_second_to_at_most_thirty(self) -> None:
        pauses = [background.Backoff().pause(failures) for failures in range(1, 9)]
        assert pauses == [1, 2, 4, 8, 16, 30, 30, 30]

    def test_a_long_crash_loop_does_not_overflow(self) -> None:
        assert background.Backoff().pause(10_000) == 30


class TestRestart:
    async def test_a_failed_task_is_restarted_and_counted(self) -> None:
        name, runs = task_name(), []
        tasks = background.BackgroundTasks(backoff=QUICK)
        tasks.start(name, failing(2, runs))
        await until(lambda: len(runs) == 3)
        await tasks.stop()
        assert restarts(name) == 2

    async def test_a_task_that_ends_before_the_stop_is_restarted(self) -> None:
        name, runs = task_name(), []

        async def ends_at_once(_stop: asyncio.Event) -> None:
            runs.append(1)

        tasks = background.BackgroundTasks(backoff=QUICK)
        tasks.start(name, ends_at_once)
        await until(lambda: len(runs) >= 3)
        await tasks.stop()
        assert restarts(name) >= 2

    async def test_the_stop_ends_a_task_waiting_for_its_restart(self) -> None:
        name, runs = task_name(), []
        tasks = background.BackgroundTasks(backoff=background.Backoff(first=60, longest=60))
        tasks.start(name, failing(1, runs))
        await until(lambda: tasks.down() == [name])
        async with asyncio.timeout(1):
            await tasks.stop()
        assert (runs, restarts(name)) == ([1], 0)


class TestEvery:
    """A periodic job: the segmenter's flush of tickets raised and the router's deferred
    ticket states run once more when told to stop, so what they hold is not lost."""

    @pytest.mark.parametrize(("once_more", "expected"), [(True, 1), (False, 0)])
    async def test_stopping_runs_it_once_more_when_asked(self, once_more: bool,
                                                          expected: int) -> None:
        runs: list[int] = []

        async def action() -> None:
            runs.append(1)

        stop = asyncio.Event()
        job = asyncio.create_task(
            background.every(3600, action, stop, once_more_on_stop=once_more))
        await asyncio.sleep(0)  # waiting for its first period
        stop.set()  # long before it has passed
        await job
        assert len(runs) == expected


    async def test_it_waits_its_interval_before_each_run(self) -> None:
        """The interval the settings give (LOAD_SAMPLE_SECONDS, ESCALATION_CHECK_SECONDS,
        WEBHOOK_POLL_SECONDS: tests/integration/test_periodic_settings.py) is the one
        waited out before each run."""
        waits: list[float] = []
        runs: list[int] = []

        async def recorded(stop: asyncio.Event, seconds: float) -> None:
            waits.append(seconds)
            if len(waits) == 3:
                stop.set()

        async def action() -> None:
            runs.append(len(waits))

        await background.every(7.25, action, asyncio.Event(), wait=recorded)
        assert (waits, runs) == ([7.25, 7.25, 7.25], [1, 2])

    async def test_a_failed_run_is_counted_under_its_task_and_the_task_goes_on(
            self) -> None:
        name, runs = task_name(), []

        async def fails_twice() -> None:
            runs.append(1)
            if len(runs) <= 2:
                raise RuntimeError("store away")

        tasks = background.BackgroundTasks(backoff=QUICK)
        tasks.start(name, lambda stop: background.every(0.001, fails_twice, stop))
        assert runs_failed(name) == 0  # exported from the start
        await until(lambda: len(runs) >= 4)
        await tasks.stop()
        assert (runs_failed(name), restarts(name), tasks.down()) == (2, 0, [])


def runs_failed(name: str) -> float | None:
    return REGISTRY.get_sample_value("routing_background_runs_failed_total", {"task": name})


class TestHealth:
    async def test_a_running_task_is_up(self) -> None:
        name = task_name()
        tasks = background.BackgroundTasks()
        tasks.start(name, failing(0, []))
        await asyncio.sleep(0)
        assert tasks.down() == []
        assert up(name) == 1
        await tasks.stop()

    async def test_down_while_waiting_and_until_it_has_run_steadily(self) -> None:
        name, runs, clock = task_name(), [], Clock()
        tasks = background.BackgroundTasks(backoff=background.Backoff(first=0.05),
                                           steady_after=10, clock=clock)
        tasks.start(name, failing(1, runs))
        await until(lambda: bool(runs))
        assert tasks.down() == [name]  # waiting for its restart
        assert up(name) == 0
        await until(lambda: len(runs) == 2)
        assert tasks.down() == [name]  # restarted: not yet known to have recovered
        clock.now += 10
        assert tasks.down() == []
        assert up(name) == 1
        await tasks.stop()

    async def test_a_task_failing_after_a_steady_run_pauses_the_shortest_again(
            self) -> None:
        name, runs, clock = task_name(), [], Clock()
        fail = asyncio.Event()

        async def job(stop: asyncio.Event) -> None:
            runs.append(1)
            if len(runs) <= 2:
                raise RuntimeError("broken")
            await fail.wait()  # runs steadily, then fails once more
            fail.clear()
            raise RuntimeError("broken again")

        tasks = background.BackgroundTasks(backoff=background.Backoff(first=0.02, longest=60),
                                           steady_after=10, clock=clock)
        tasks.start(name, job)
        await until(lambda: len(runs) == 3)  # after pauses of 0.02 s and 0.04 s
        clock.now += 10
        fail.set()
        async with asyncio.timeout(1):  # the pause is 0.02 s again, not 0.08 s or more
            await until(lambda: len(runs) == 4)
        fail.set()  # the job waits for this, not for the stop
        await tasks.stop()


class TestReadiness:
    @pytest.mark.parametrize("create_app", [router_app.create_app,
                                            segmenter_app.create_app,
                                            metrics_app.create_app])
    async def test_readyz_names_the_tasks_that_are_down(
            self, create_app: Callable[[Settings], FastAPI]) -> None:
        app = create_app(Settings())
        name = task_name()
        tasks = service_context.of(app).background = background.BackgroundTasks(
            backoff=background.Backoff(first=60))
        tasks.start(name, failing(1, []))
        await until(lambda: tasks.down() == [name])
        transport = httpx.ASGITransport(app=app)  # no lifespan: nothing else started
        async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
            response = await client.get("/readyz")
        await tasks.stop()
        assert response.status_code == 503
        assert response.json() == {"status": "not_ready", "down": [name]}


class TestFailuresInARow:
    """A reader's pauses while the broker is away (the dead letters' count, the replay
    markers): growing, so that an outage costs a warning a pause, not one a second."""

    def test_the_pause_grows_with_each_failure_then_starts_again_after_a_success(
            self) -> None:
        failures = background.FailuresInARow(background.Backoff(first=1.0, longest=8.0))
        assert [failures.failed() for _ in range(5)] == [1.0, 2.0, 4.0, 8.0, 8.0]
        assert failures.count == 5
        failures.succeeded()
        assert failures.count == 0
        assert failures.failed() == 1.0

    def test_a_minute_away_costs_a_few_warnings(self) -> None:
        failures, waited, tries = background.FailuresInARow(), 0.0, 0
        while waited < 60.0:
            waited += failures.failed()
            tries += 1
        assert tries == 6  # 1 + 2 + 4 + 8 + 16 + 30 s: where a pause of 1 s made 60

    async def test_a_failure_is_warned_with_its_class_the_count_and_the_pause(
            self, caplog: pytest.LogCaptureFixture) -> None:
        """Both readers' warning ("dead letters not read", "replay markers not read"),
        written once, on the reader's own logger."""
        failures = background.FailuresInARow(background.Backoff(first=1.0, longest=8.0))
        stop = asyncio.Event()
        stop.set()  # the pause ends at once
        reader = logging.getLogger("services.metrics.kafka_watch")
        with caplog.at_level(logging.WARNING, logger=reader.name):
            for _ in range(2):
                await failures.pause_after(ConnectionResetError(), stop,
                                           warning="dead letters not read", by=reader)
        assert [(record.name, record.getMessage(), record.error,  # type: ignore[attr-defined]
                 record.failures_in_a_row, record.pause_seconds)  # type: ignore[attr-defined]
                for record in caplog.records] == [
            (reader.name, "dead letters not read", "ConnectionResetError", 1, 1.0),
            (reader.name, "dead letters not read", "ConnectionResetError", 2, 2.0)]
        assert failures.count == 2


class TestUntilEither:
    @pytest.mark.parametrize("which", ["stop", "event"])
    async def test_it_waits_until_either_is_set(self, which: str) -> None:
        stop, event = asyncio.Event(), asyncio.Event()
        waiting = asyncio.create_task(background.until_either(stop, event))
        await asyncio.sleep(0)
        assert not waiting.done()

        {"stop": stop, "event": event}[which].set()

        await asyncio.wait_for(waiting, 10)

    async def test_its_seconds_end_it_with_neither_set(self) -> None:
        stop, event = asyncio.Event(), asyncio.Event()

        await asyncio.wait_for(background.until_either(stop, event, seconds=0.01), 10)

        assert not stop.is_set() and not event.is_set()
