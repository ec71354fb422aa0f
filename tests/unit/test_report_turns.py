"""Report turns (services/core/report_turns.py): at most so many reports at once, in the
order they came, and one per credential; a caller that leaves while its report waits
gives its place up."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable

import pytest

from services.core import report_turns
from services.core.report_turns import CallerGone, OneAtATime, ReportTurns
from tests import waits

# Let the loop run until a condition holds (the tasks below need a few steps).
until = functools.partial(waits.until, every=0, looks=1000)


class Report:
    """A report computed inside its turn, until the test lets it finish."""

    def __init__(self, turns: ReportTurns, credential_id: str, log: list[str],
                 gone: Callable[[], Awaitable[bool]] | None = None) -> None:
        self.finish = asyncio.Event()
        self.started = False

        async def compute() -> None:
            async with turns.turn(credential_id, gone):
                self.started = True
                log.append(credential_id)
                await self.finish.wait()

        self.task = asyncio.create_task(compute())


async def passes_its_turn_on(computing: Report, after: Report) -> None:
    """`computing` finishes, and the report waiting `after` it takes the turn."""
    computing.finish.set()
    await until(lambda: after.started)
    after.finish.set()
    await asyncio.gather(computing.task, after.task)


async def test_at_most_so_many_reports_at_once_the_others_in_the_order_they_came() -> None:
    turns, log = ReportTurns(2), []
    a, b, c, d = (Report(turns, name, log) for name in "abcd")
    await until(lambda: a.started and b.started and turns.holders == 4)
    assert (c.started, d.started) == (False, False)  # waiting their turn

    b.finish.set()
    await until(lambda: c.started)
    assert not d.started
    a.finish.set()
    await until(lambda: d.started)
    c.finish.set()
    d.finish.set()
    await asyncio.gather(a.task, b.task, c.task, d.task)
    assert log == ["a", "b", "c", "d"]
    assert turns.holders == 0


async def test_a_credential_has_one_report_at_a_time_computed_or_waiting() -> None:
    turns, log = ReportTurns(1), []
    first = Report(turns, "a", log)
    waiting = Report(turns, "b", log)
    await until(lambda: first.started and turns.holders == 2)

    for holder in ("a", "b"):  # computed, then waiting for its turn
        with pytest.raises(OneAtATime):
            async with turns.turn(holder):
                raise AssertionError("a second turn was given")
    assert turns.holders == 2  # the refused asks took nothing away

    first.finish.set()
    await until(lambda: waiting.started)
    waiting.finish.set()
    await asyncio.gather(first.task, waiting.task)
    async with turns.turn("a"):  # its report done, the credential may ask again
        assert turns.holders == 1


async def test_a_report_that_fails_or_is_cancelled_gives_its_turn_back() -> None:
    turns, log = ReportTurns(1), []
    with pytest.raises(ZeroDivisionError):
        async with turns.turn("a"):
            raise ZeroDivisionError

    computing = Report(turns, "b", log)
    leaving = Report(turns, "c", log)
    await until(lambda: computing.started and turns.holders == 2)
    leaving.task.cancel()  # cancelled while it waited (a server stopping)
    with pytest.raises(asyncio.CancelledError):
        await leaving.task
    assert turns.holders == 1

    await passes_its_turn_on(computing, Report(turns, "c", log))
    assert log == ["b", "c"] and turns.holders == 0


async def test_a_periodic_job_waits_for_its_turn_as_a_callers_report_does() -> None:
    turns, log = ReportTurns(1), []
    caller = Report(turns, "a", log)
    ran = asyncio.Event()

    async def measure() -> None:
        log.append("job")
        ran.set()

    job = asyncio.create_task(turns.periodic("service-parity", measure)())
    await until(lambda: caller.started and turns.holders == 2)
    assert not ran.is_set()  # the caller's report holds the only turn
    with pytest.raises(OneAtATime):  # its holder is the job's, never a credential's
        async with turns.turn("job:service-parity"):
            raise AssertionError("a second turn was given")

    caller.finish.set()
    await asyncio.gather(caller.task, job)
    assert log == ["a", "job"] and turns.holders == 0


async def test_a_run_a_change_sets_off_waits_its_turn_and_later_changes_join_it() -> None:
    """Imports' recomputations of tiers (`run_in_turn`): the first waits behind the report
    holding the only turn and is not refused; a second import made while it waits joins
    it (one run, both answered with its result), and one made once it is computed
    gets a run of its own, after it."""
    turns, log = ReportTurns(1), []
    caller = Report(turns, "a", log)
    finish = asyncio.Event()
    await until(lambda: caller.started)

    async def recompute() -> int:
        log.append("run")
        await finish.wait()
        return log.count("run")

    first = asyncio.create_task(turns.run_in_turn("import-recompute", recompute))
    await until(lambda: turns.holders == 2)
    second = asyncio.create_task(turns.run_in_turn("import-recompute", recompute))
    await asyncio.sleep(0)
    assert turns.holders == 2 and log == ["a"]  # joined the waiting run, both wait

    caller.finish.set()
    await until(lambda: log == ["a", "run"])  # the run computed: a later change...
    third = asyncio.create_task(turns.run_in_turn("import-recompute", recompute))
    for _ in range(10):
        await asyncio.sleep(0)
    assert log == ["a", "run"]  # ...waits for a run of its own, after this one
    finish.set()
    assert await asyncio.gather(first, second, third) == [1, 1, 2]
    assert log == ["a", "run", "run"] and turns.holders == 0


async def test_a_jobs_runs_are_computed_one_after_the_other_even_with_turns_free() -> None:
    """Two turns free: a change made while the job's run is computed gets a run of its
    own, which waits for the first to end (two passes at once could publish their
    results out of order), and a change made meanwhile joins it."""
    turns, log = ReportTurns(2), []
    finish = [asyncio.Event(), asyncio.Event()]

    async def recompute() -> int:
        n = log.count("start")
        log.append("start")
        await finish[n].wait()
        log.append("end")
        return n + 1

    first = asyncio.create_task(turns.run_in_turn("import-recompute", recompute))
    await until(lambda: log == ["start"])
    second = asyncio.create_task(turns.run_in_turn("import-recompute", recompute))
    third = asyncio.create_task(turns.run_in_turn("import-recompute", recompute))
    for _ in range(10):
        await asyncio.sleep(0)
    assert log == ["start"] and turns.holders == 1  # the second waits, a turn free

    finish[0].set()
    await until(lambda: log == ["start", "end", "start"])
    finish[1].set()
    assert await asyncio.gather(first, second, third) == [1, 2, 2]
    assert turns.holders == 0


async def test_a_run_goes_on_when_its_caller_leaves() -> None:
    """What set the run off is done (the rows imported): its caller leaving, its request
    cancelled, does not drop the run."""
    turns, log = ReportTurns(1), []
    caller = Report(turns, "a", log)
    await until(lambda: caller.started)

    async def recompute() -> None:
        log.append("run")

    leaving = asyncio.create_task(turns.run_in_turn("import-recompute", recompute))
    await until(lambda: turns.holders == 2)
    leaving.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leaving
    caller.finish.set()
    await until(lambda: log == ["a", "run"] and turns.holders == 0)


async def test_at_shutdown_the_runs_changes_set_off_are_cancelled_and_waited_for() -> None:
    """Waiting or computed, with their callers gone: cancelled before the store and the
    publisher they use close, not left to fail on them or to be cut off by the loop's
    end."""
    turns, log = ReportTurns(1), []
    report = Report(turns, "a", log)
    await until(lambda: report.started)
    computing = asyncio.Event()

    async def recompute(name: str) -> None:
        log.append(name)
        computing.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            log.append(f"{name} cancelled")
            raise

    async def left(job: str) -> None:
        caller = asyncio.create_task(turns.run_in_turn(job, lambda: recompute(job)))
        await until(lambda: turns.holders == 2)
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller

    await left("import-recompute")
    report.finish.set()
    await asyncio.wait_for(computing.wait(), 5)  # one computed...
    waiting = asyncio.create_task(turns.run_in_turn("other", lambda: recompute("other")))
    await until(lambda: turns.holders == 2)  # ...one waiting, its caller still there

    await turns.stop()

    assert log == ["a", "import-recompute", "import-recompute cancelled"]
    assert turns.holders == 0
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await report.task


class Caller:
    """Whether a report's caller is still there, as its request would say."""

    def __init__(self) -> None:
        self.left = False
        self.asked = 0

    async def gone(self) -> bool:
        self.asked += 1
        return self.left


async def soon(condition: Callable[[], bool]) -> None:
    """Wait for `condition` over the loop's timers (the waiting report asks its caller
    every GONE_POLL_SECONDS), up to 10 s."""
    for _ in range(10_000):
        if condition():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("the condition never held in 10 s")


@pytest.fixture
def quick_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(report_turns, "GONE_POLL_SECONDS", 0.001)


@pytest.mark.usefixtures("quick_polls")
async def test_a_caller_that_leaves_while_its_report_waits_gives_its_place_up() -> None:
    turns, log = ReportTurns(1), []
    computing = Report(turns, "a", log)
    caller = Caller()
    leaving = Report(turns, "b", log, gone=caller.gone)
    behind = Report(turns, "c", log)
    await soon(lambda: computing.started and turns.holders == 3 and caller.asked > 1)

    caller.left = True
    with pytest.raises(CallerGone):
        await leaving.task
    assert not leaving.started and turns.holders == 2
    again = Report(turns, "b", log)  # its credential may ask again at once
    await until(lambda: turns.holders == 3)

    computing.finish.set()
    await until(lambda: behind.started)
    assert not again.started  # behind the report that waited before it
    behind.finish.set()
    await until(lambda: again.started)
    again.finish.set()
    await asyncio.gather(computing.task, behind.task, again.task)
    assert log == ["a", "c", "b"] and turns.holders == 0


async def test_a_caller_is_not_asked_when_a_turn_is_free() -> None:
    turns, caller = ReportTurns(1), Caller()
    caller.left = True  # would be given up, had it waited
    async with turns.turn("a", caller.gone):
        assert turns.holders == 1
    assert caller.asked == 0


@pytest.mark.usefixtures("quick_polls")
async def test_a_turn_that_comes_as_its_caller_leaves_is_passed_on() -> None:
    """The turn freed, and taken by the waiting report, just before its caller is found
    gone: it goes on to the next report, not kept by the one that left."""
    turns, log = ReportTurns(1), []
    computing = Report(turns, "a", log)
    await until(lambda: computing.started)

    async def gone_as_the_turn_comes() -> bool:
        computing.finish.set()
        await computing.task  # its turn given back: the waiting report's to take
        return True

    leaving = Report(turns, "b", log, gone=gone_as_the_turn_comes)
    with pytest.raises(CallerGone):
        await leaving.task
    after = Report(turns, "c", log)
    await until(lambda: after.started)  # the one turn was not kept by the leaver
    after.finish.set()
    await after.task
    assert log == ["a", "c"] and turns.holders == 0


async def test_a_caller_that_left_just_as_its_turn_came_is_not_computed() -> None:
    """Its turn came before it next asked (every GONE_POLL_SECONDS): asked once more."""
    turns, log = ReportTurns(1), []
    computing = Report(turns, "a", log)
    await until(lambda: computing.started)
    caller = Caller()
    leaving = Report(turns, "b", log, gone=caller.gone)
    behind = Report(turns, "c", log)
    await until(lambda: turns.holders == 3)
    caller.left = True
    computing.finish.set()  # the turn comes, well within a second
    await until(lambda: leaving.task.done() or leaving.started)
    assert not leaving.started  # its report never computed
    with pytest.raises(CallerGone):
        await leaving.task
    assert caller.asked == 1
    await until(lambda: behind.started)
    behind.finish.set()
    await asyncio.gather(computing.task, behind.task)
    assert log == ["a", "c"] and turns.holders == 0


@pytest.mark.usefixtures("quick_polls")
@pytest.mark.parametrize("ending", ["cancelled", "asking fails"])
async def test_a_wait_that_ends_otherwise_gives_its_place_up(ending: str) -> None:
    """The request cancelled while it waits (a server stopping), or the ask failing."""
    turns, log = ReportTurns(1), []
    computing = Report(turns, "a", log)
    await until(lambda: computing.started)
    asked = asyncio.Event()

    async def gone() -> bool:
        asked.set()
        if ending == "asking fails":
            raise ConnectionResetError
        return False

    leaving = Report(turns, "b", log, gone=gone)
    await soon(asked.is_set)
    if ending == "cancelled":
        leaving.task.cancel()
    with pytest.raises(asyncio.CancelledError if ending == "cancelled"
                       else ConnectionResetError):
        await leaving.task
    assert turns.holders == 1
    await passes_its_turn_on(computing, Report(turns, "c", log))
    assert log == ["a", "c"] and turns.holders == 0
