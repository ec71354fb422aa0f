"""Leases in a real SQL store (SQLite and PostgreSQL): holders compete and one wins, a
lease passes over when its holder stops renewing, and a periodic job runs only on the
instance that holds its lease."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.core import leases

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


@pytest.fixture(autouse=True)
def leases_of_their_intervals(monkeypatch: pytest.MonkeyPatch) -> None:
    """The periodic jobs here run every fraction of a second, their leases a few of those
    intervals long (INTERVALS_PER_LEASE), not the 30 s the services' leases last at least
    (tested on its own below)."""
    monkeypatch.setattr(leases, "MIN_LEASE_SECONDS", 0.0)


def holders(sessions: async_sessionmaker[AsyncSession], count: int) -> list[leases.Leases]:
    return [leases.Leases(sessions, holder=leases.holder_id("router", str(n)))
            for n in range(count)]


class TestCompeting:
    async def test_of_holders_racing_for_a_free_lease_exactly_one_wins(
            self, sessions: async_sessionmaker[AsyncSession]) -> None:
        racing = holders(sessions, 8)

        won = await asyncio.gather(*(holder.acquire("escalation", duration=MINUTE, now=T0)
                                     for holder in racing))

        assert won.count(True) == 1
        winner = racing[won.index(True)]
        assert await winner.holder_of("escalation") == winner.holder

    async def test_a_held_lease_is_refused_to_others_until_it_expires(
            self, sessions: async_sessionmaker[AsyncSession]) -> None:
        first, second = holders(sessions, 2)
        assert await first.acquire("purge", duration=MINUTE, now=T0)

        assert not await second.acquire("purge", duration=MINUTE, now=T0 + MINUTE / 2)
        assert await first.holder_of("purge") == first.holder

    async def test_leases_of_different_jobs_are_independent(
            self, sessions: async_sessionmaker[AsyncSession]) -> None:
        first, second = holders(sessions, 2)

        assert await first.acquire("escalation", duration=MINUTE, now=T0)
        assert await second.acquire("tier-recompute", duration=MINUTE, now=T0)


class TestRenewal:
    async def test_the_holder_renews_its_lease_before_it_expires(
            self, sessions: async_sessionmaker[AsyncSession]) -> None:
        first, second = holders(sessions, 2)
        assert await first.acquire("escalation", duration=MINUTE, now=T0)

        assert await first.acquire("escalation", duration=MINUTE, now=T0 + MINUTE / 2)
        # Renewed until T0 + 1.5 minutes: still held past the first expiry.
        assert not await second.acquire("escalation", duration=MINUTE,
                                        now=T0 + MINUTE * 1.25)

    async def test_the_lease_passes_over_when_its_holder_stops_renewing(
            self, sessions: async_sessionmaker[AsyncSession]) -> None:
        first, second = holders(sessions, 2)
        assert await first.acquire("escalation", duration=MINUTE, now=T0)

        assert await second.acquire("escalation", duration=MINUTE, now=T0 + MINUTE)
        assert await second.holder_of("escalation") == second.holder
        # The old holder, back, finds it taken: it does not run the job.
        assert not await first.acquire("escalation", duration=MINUTE,
                                       now=T0 + MINUTE * 1.5)

    async def test_a_released_lease_is_free_at_once(
            self, sessions: async_sessionmaker[AsyncSession]) -> None:
        first, second = holders(sessions, 2)
        assert await first.acquire("purge", duration=MINUTE, now=T0)

        await second.release("purge")  # not its lease: nothing happens
        assert not await second.acquire("purge", duration=MINUTE, now=T0)
        await first.release("purge")
        assert await second.acquire("purge", duration=MINUTE, now=T0)


class CountingLeases(leases.Leases):
    """Real leases that count their attempts, so the test knows both instances tried."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], *, holder: str,
                 tried: asyncio.Event, attempts: dict[str, int]) -> None:
        super().__init__(sessions, holder=holder)
        self._tried, self._attempts = tried, attempts

    async def acquire(self, name: str, *, duration: timedelta,
                      now: datetime | None = None) -> bool:
        held = await super().acquire(name, duration=duration, now=now)
        self._attempts[self.holder] = self._attempts.get(self.holder, 0) + 1
        if len(self._attempts) == 2 and min(self._attempts.values()) >= 3:
            self._tried.set()
        return held


class TestPeriodicJob:
    async def test_a_job_runs_only_on_the_instance_holding_its_lease(
            self, sessions: async_sessionmaker[AsyncSession],
            monkeypatch: pytest.MonkeyPatch) -> None:
        # A lease of 50 intervals (10 s), not 3: a stall of the loaded test machine
        # between renewals must not hand the job over while the holder still runs.
        monkeypatch.setattr(leases, "INTERVALS_PER_LEASE", 50)
        tried, attempts = asyncio.Event(), dict[str, int]()
        instances = [CountingLeases(sessions, holder=leases.holder_id("router", str(n)),
                                    tried=tried, attempts=attempts) for n in range(2)]
        runs: list[str] = []
        stop = asyncio.Event()

        def job(instance: leases.Leases) -> Callable[[], Awaitable[None]]:
            async def escalate() -> None:
                runs.append(instance.holder)
            return escalate

        jobs = [asyncio.create_task(leases.every_while_holding(
            instance, "escalation", 0.2, job(instance), stop)) for instance in instances]
        await tried.wait()
        stop.set()
        await asyncio.gather(*jobs)

        assert len(runs) >= 2
        assert len(set(runs)) == 1, runs
        # Given up at the end, so a successor need not wait for it to expire.
        assert await instances[0].holder_of("escalation") is None


class RecordingLeases(leases.Leases):
    """Real leases that say what happened, and can be made to fail a renewal."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], *, holder: str,
                 happened: list[str]) -> None:
        super().__init__(sessions, holder=holder)
        self.happened = happened
        self.failing = False
        self.fail_once = False
        self.renewed, self.failed = asyncio.Event(), asyncio.Event()

    async def acquire(self, name: str, *, duration: timedelta,
                      now: datetime | None = None) -> bool:
        if self.failing or self.fail_once:
            self.fail_once = False
            self.happened.append("renewal failed")
            self.failed.set()
            raise ConnectionError("the store is away")
        held = await super().acquire(name, duration=duration, now=now)
        self.renewed.set()
        return held

    async def release(self, name: str) -> None:
        self.happened.append("released")
        await super().release(name)


class TestStandingDown:
    """What a job leaves running (the webhook workers) stops whenever its instance stops
    holding the lease, and before the lease is given up: no two instances at work."""

    async def test_before_the_lease_is_given_up_and_when_it_is_not_renewed(
            self, sessions: async_sessionmaker[AsyncSession]) -> None:
        happened: list[str] = []
        holder = RecordingLeases(sessions, holder=leases.holder_id("router", "0"),
                                 happened=happened)
        ran, lost = asyncio.Event(), asyncio.Event()

        async def job() -> None:
            happened.append("ran")
            ran.set()

        async def stand_down() -> None:
            happened.append("stood down")
            lost.set()

        stop = asyncio.Event()
        task = asyncio.create_task(leases.every_while_holding(
            holder, "webhook-delivery", 0.05, job, stop, on_lost=stand_down))
        await asyncio.wait_for(ran.wait(), 10)
        # From here on: a lease lost before (a renewal late on a loaded machine, with
        # leases of 0.05 s) is not what is tested.
        lost.clear()
        failing_from, holder.failing = len(happened), True
        await asyncio.wait_for(lost.wait(), 10)
        since = happened[failing_from:]
        stood_down = since.index("stood down")
        assert stood_down > 0 and set(since[:stood_down]) == {"renewal failed"}
        holder.failing, ran = False, asyncio.Event()
        await asyncio.wait_for(ran.wait(), 10)  # renewed: at work again
        lost.clear()
        stop.set()
        await task
        assert happened[-2:] == ["stood down", "released"]


class TakenAt(leases.Leases):
    """Real leases that note when each of their acquisitions succeeded, and say when they
    have `enough`."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], *, holder: str,
                 enough: int) -> None:
        super().__init__(sessions, holder=holder)
        self.taken: list[datetime] = []
        self.enough, self.taken_enough = enough, asyncio.Event()

    async def acquire(self, name: str, *, duration: timedelta,
                      now: datetime | None = None) -> bool:
        now = now or datetime.now(UTC)
        held = await super().acquire(name, duration=duration, now=now)
        if held:
            self.taken.append(now)
            if len(self.taken) >= self.enough:
                self.taken_enough.set()
        return held


def long_run(happened: list[str], running: asyncio.Event,
             done: asyncio.Event | None = None) -> Callable[[], Awaitable[None]]:
    """A run that lasts until `done` (for ever without it), and says if it is cancelled."""
    async def run() -> None:
        running.set()
        try:
            await (done or asyncio.Event()).wait()
        except asyncio.CancelledError:
            happened.append("run cancelled")
            raise
    return run


class TestRenewalBetweenRuns:
    async def test_a_renewal_failing_once_far_from_expiry_does_not_stand_down(
            self, sessions: async_sessionmaker[AsyncSession],
            monkeypatch: pytest.MonkeyPatch) -> None:
        """A job whose runs are quick (webhook delivery: its workers run apart) renews
        between runs: a store that fails one renewal, the lease far from expiring, costs
        it a run, not the lease and what it left running."""
        monkeypatch.setattr(leases, "INTERVALS_PER_LEASE", 20)  # 1 s: far from expiring
        happened: list[str] = []
        holder = RecordingLeases(sessions, holder=leases.holder_id("router", "0"),
                                 happened=happened)
        ran, stop = asyncio.Event(), asyncio.Event()

        async def deliver() -> None:
            ran.set()

        async def stand_down() -> None:
            happened.append("stood down")

        task = asyncio.create_task(leases.every_while_holding(
            holder, "webhook-delivery", 0.05, deliver, stop, on_lost=stand_down))
        await asyncio.wait_for(ran.wait(), 10)
        holder.fail_once = True
        await asyncio.wait_for(holder.failed.wait(), 10)
        ran.clear()
        await asyncio.wait_for(ran.wait(), 10)  # a run after the blip, still holding

        assert happened == ["renewal failed"]
        stop.set()
        await asyncio.wait_for(task, 10)
        assert happened == ["renewal failed", "stood down", "released"]


    async def test_a_renewal_the_store_holds_between_runs_stands_down_in_time(
            self, sessions: async_sessionmaker[AsyncSession]) -> None:
        """A quick job's renewal that the store holds (a lock, a statement timeout) is not
        waited for past half an interval before the lease expires: the instance stands
        down (its workers stopped) before another may take the job; the renewal is left
        to finish, never cancelled mid-statement."""
        happened: list[str] = []
        holder = SlowLeases(sessions, holder=leases.holder_id("router", "0"),
                            happened=happened)
        ran, lost, stop = asyncio.Event(), asyncio.Event(), asyncio.Event()

        async def deliver() -> None:
            ran.set()

        async def stand_down() -> None:
            happened.append("stood down")
            lost.set()

        task = asyncio.create_task(leases.every_while_holding(
            holder, "webhook-delivery", 0.1, deliver, stop, on_lost=stand_down))
        await asyncio.wait_for(ran.wait(), 10)
        holder.slow.set()

        await asyncio.wait_for(lost.wait(), 10)
        assert happened == ["stood down"]
        holder.answer.set()
        await asyncio.wait_for(holder.answered.wait(), 10)
        stop.set()
        await asyncio.wait_for(task, 10)
        assert "renewal cancelled" not in happened


class TestLongRuns:
    """A run that lasts longer than its lease (a pass waiting for its turn, a long
    escalation sweep) renews it while it runs, and is cancelled before its instance
    stands down if the lease is found taken, or is not renewed before it would expire."""

    async def test_a_run_outlasting_its_lease_keeps_it(
            self, sessions: async_sessionmaker[AsyncSession],
            monkeypatch: pytest.MonkeyPatch) -> None:
        # A lease of 50 intervals (10 s): a stall of the loaded test machine does not cut
        # the run short; what is checked is on the lease's own recorded times.
        monkeypatch.setattr(leases, "INTERVALS_PER_LEASE", 50)
        first = TakenAt(sessions, holder=leases.holder_id("segmenter", "0"), enough=2)
        other = leases.Leases(sessions, holder=leases.holder_id("segmenter", "1"))
        running, done, happened = asyncio.Event(), asyncio.Event(), list[str]()
        stop = asyncio.Event()
        job = asyncio.create_task(leases.every_while_holding(
            first, "tier-recompute", 0.2, long_run(happened, running, done), stop))
        await asyncio.wait_for(running.wait(), 10)

        await asyncio.wait_for(first.taken_enough.wait(), 30)  # renewed while it runs
        taken, renewed = first.taken[:2]
        assert renewed > taken
        # Between the expiry of the lease as taken before the run and the renewal's:
        # another instance is refused it (on its clock, whatever the test machine's pace).
        lease = leases.lease_for(0.2)
        between = taken + lease + (renewed - taken) / 2
        assert not await other.acquire("tier-recompute", duration=MINUTE, now=between)
        done.set()
        stop.set()
        await asyncio.wait_for(job, 10)
        assert happened == []

    async def test_a_run_whose_lease_is_taken_is_cancelled_before_it_stands_down(
            self, sessions: async_sessionmaker[AsyncSession],
            monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(leases, "INTERVALS_PER_LEASE", 50)  # lost only by being taken
        job = await LongJob.started(RecordingLeases(
            sessions, holder=leases.holder_id("segmenter", "0"), happened=[]), 0.2)
        other = leases.Leases(sessions, holder=leases.holder_id("segmenter", "1"))
        # Another instance takes it, as if it had expired (its clock far ahead).
        later = datetime.now(UTC) + timedelta(hours=1)
        assert await other.acquire(job.name, duration=MINUTE, now=later)

        await asyncio.wait_for(job.lost.wait(), 10)
        assert job.happened == ["run cancelled", "stood down"]
        await job.stopped()
        assert await other.holder_of(job.name) == other.holder

    async def test_a_renewal_failing_once_does_not_cut_a_run_short(
            self, sessions: async_sessionmaker[AsyncSession],
            monkeypatch: pytest.MonkeyPatch) -> None:
        # A lease of 20 intervals (1 s): one failed renewal is far from its expiry.
        monkeypatch.setattr(leases, "INTERVALS_PER_LEASE", 20)
        holder = RecordingLeases(sessions, holder=leases.holder_id("router", "0"),
                                 happened=[])
        job = await LongJob.started(holder, 0.05, until=asyncio.Event())
        holder.fail_once = True  # the store blips while the run lasts
        await asyncio.wait_for(holder.failed.wait(), 10)
        holder.renewed.clear()
        await asyncio.wait_for(holder.renewed.wait(), 10)  # renewed after the blip

        assert job.happened == ["renewal failed"]
        await job.stopped()
        assert job.happened == ["renewal failed", "stood down", "released"]

    async def test_a_run_whose_renewals_fail_until_its_lease_would_expire_is_cancelled(
            self, sessions: async_sessionmaker[AsyncSession]) -> None:
        holder = RecordingLeases(sessions, holder=leases.holder_id("router", "0"),
                                 happened=[])
        job = await LongJob.started(holder, 0.5)
        holder.failing = True  # the store goes away while the run lasts

        await asyncio.wait_for(job.lost.wait(), 10)
        cancelled = job.happened.index("run cancelled")
        assert job.happened[cancelled + 1] == "stood down"
        assert cancelled >= 1 and set(job.happened[:cancelled]) == {"renewal failed"}
        await job.stopped()  # the job goes on, and ends when stopped

    async def test_a_renewal_that_does_not_answer_in_time_is_left_to_finish(
            self, sessions: async_sessionmaker[AsyncSession]) -> None:
        """The store holds the renewal past the lease's margin: the run is cut short and
        its instance stands down, but the renewal is not cancelled mid-statement (on
        SQLite that could leave the store's write lock held); it finishes later."""
        holder = SlowLeases(sessions, holder=leases.holder_id("router", "0"), happened=[])
        job = await LongJob.started(holder, 0.1)
        holder.slow.set()

        await asyncio.wait_for(job.lost.wait(), 10)
        assert job.happened == ["run cancelled", "stood down"]
        holder.answer.set()
        await asyncio.wait_for(holder.answered.wait(), 10)
        await job.stopped()
        assert "renewal cancelled" not in job.happened

    async def test_a_run_going_when_the_job_stops_is_cancelled(
            self, sessions: async_sessionmaker[AsyncSession],
            monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(leases, "INTERVALS_PER_LEASE", 50)
        holder = RecordingLeases(sessions, holder=leases.holder_id("segmenter", "0"),
                                 happened=[])
        job = await LongJob.started(holder, 0.05)

        await job.stopped()  # not held by the run, which never ends
        assert job.happened == ["run cancelled", "stood down", "released"]
        assert await holder.holder_of(job.name) is None


@dataclass
class LongJob:
    """A periodic job on `holder` whose run lasts until `until` is set (for ever without
    it), running: what happened to it in order (the holder's records, the run's
    cancellation, its standing down), and whether it stood down (`lost`)."""

    name: str
    happened: list[str]
    lost: asyncio.Event
    stop: asyncio.Event
    until: asyncio.Event | None
    task: asyncio.Task[None]

    @classmethod
    async def started(cls, holder: RecordingLeases, seconds: float, *,
                      until: asyncio.Event | None = None) -> LongJob:
        running, lost, stop = asyncio.Event(), asyncio.Event(), asyncio.Event()

        async def stand_down() -> None:
            holder.happened.append("stood down")
            lost.set()

        task = asyncio.create_task(leases.every_while_holding(
            holder, "long-job", seconds, long_run(holder.happened, running, until), stop,
            on_lost=stand_down))
        await asyncio.wait_for(running.wait(), 10)
        return cls("long-job", holder.happened, lost, stop, until, task)

    async def stopped(self) -> None:
        """Its run let end (if it can), the job stopped and waited for (bounded)."""
        if self.until is not None:
            self.until.set()
        self.stop.set()
        await asyncio.wait_for(self.task, 10)


class SlowLeases(RecordingLeases):
    """Real leases whose renewals, once `slow` is set, wait for `answer` (a store that
    holds a statement), and say whether one was cancelled meanwhile."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], *, holder: str,
                 happened: list[str]) -> None:
        super().__init__(sessions, holder=holder, happened=happened)
        self.slow, self.answer, self.answered = asyncio.Event(), asyncio.Event(), \
            asyncio.Event()
        self.held_back = 0

    async def acquire(self, name: str, *, duration: timedelta,
                      now: datetime | None = None) -> bool:
        if not self.slow.is_set() or self.answer.is_set():
            return await super().acquire(name, duration=duration, now=now)
        self.held_back += 1
        try:
            await self.answer.wait()
        except asyncio.CancelledError:
            self.happened.append("renewal cancelled")
            raise
        held = await super().acquire(name, duration=duration, now=now)
        self.held_back -= 1
        if not self.held_back:
            self.answered.set()  # every renewal held back finished, its statement done
        return held


class TestLeaseLength:
    async def test_a_job_polled_often_holds_its_lease_at_least_the_minimum(
            self, sessions: async_sessionmaker[AsyncSession],
            monkeypatch: pytest.MonkeyPatch) -> None:
        """Webhook delivery polls every second: its lease lasts 30 s from each renewal,
        not 3, so a store slow for a few seconds under load does not cost it the lease
        (and its callbacks in flight)."""
        monkeypatch.setattr(leases, "MIN_LEASE_SECONDS", 30.0)
        holder = TakenAt(sessions, holder=leases.holder_id("router", "0"), enough=1)
        other = leases.Leases(sessions, holder=leases.holder_id("router", "1"))
        ran, stop = asyncio.Event(), asyncio.Event()

        async def deliver() -> None:
            ran.set()

        job = asyncio.create_task(leases.every_while_holding(
            holder, "webhook-delivery", 0.05, deliver, stop))
        await asyncio.wait_for(ran.wait(), 10)
        taken = holder.taken[0]
        assert leases.lease_for(1.0) == timedelta(seconds=30)
        assert leases.lease_for(3600.0) == timedelta(hours=3)
        # Past three intervals of the job, well inside 30 s: refused to another.
        assert not await other.acquire("webhook-delivery", duration=MINUTE,
                                       now=taken + timedelta(seconds=29))
        stop.set()
        await asyncio.wait_for(job, 10)
