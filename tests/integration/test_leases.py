"""Leases in a real SQL store (SQLite and PostgreSQL): holders compete and one wins, a
lease passes over when its holder stops renewing, and a periodic job runs only on the
instance that holds its lease."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.core import leases

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


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
        self.renewed = asyncio.Event()

    async def acquire(self, name: str, *, duration: timedelta,
                      now: datetime | None = None) -> bool:
        if self.failing:
            self.happened.append("renewal failed")
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
        holder.failing = True
        await asyncio.wait_for(lost.wait(), 10)
        assert happened[-2:] == ["renewal failed", "stood down"]
        holder.failing, ran = False, asyncio.Event()
        await asyncio.wait_for(ran.wait(), 10)  # renewed: at work again
        lost.clear()
        stop.set()
        await task
        assert happened[-2:] == ["stood down", "released"]


class TriesCounted(leases.Leases):
    """Real leases that count their tries, and say when they have made `enough`."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], *, holder: str,
                 enough: int = 0) -> None:
        super().__init__(sessions, holder=holder)
        self.tries, self.enough, self.tried_enough = 0, enough, asyncio.Event()

    async def acquire(self, name: str, *, duration: timedelta,
                      now: datetime | None = None) -> bool:
        held = await super().acquire(name, duration=duration, now=now)
        self.tries += 1
        if self.tries >= self.enough:
            self.tried_enough.set()
        return held


class TestLongRuns:
    """A run that lasts longer than its lease (a pass waiting for its turn, a long
    escalation sweep) renews it while it runs, and is cancelled if the lease is lost
    meanwhile: never the same job on two instances at once."""

    async def test_a_run_outlasting_its_lease_keeps_it(
            self, sessions: async_sessionmaker[AsyncSession],
            monkeypatch: pytest.MonkeyPatch) -> None:
        # A lease of 6 intervals (1.2 s): renewed every interval, a stall of the loaded
        # test machine of up to 5 intervals does not hand it over.
        monkeypatch.setattr(leases, "INTERVALS_PER_LEASE", 6)
        first = TriesCounted(sessions, holder=leases.holder_id("segmenter", "0"))
        second = TriesCounted(sessions, holder=leases.holder_id("segmenter", "1"),
                              enough=leases.INTERVALS_PER_LEASE + 2)
        running, done, runs = asyncio.Event(), asyncio.Event(), list[str]()

        async def long_run() -> None:
            runs.append("first")
            running.set()
            await done.wait()

        async def competing_run() -> None:
            runs.append("second")

        stop = asyncio.Event()
        holding = asyncio.create_task(leases.every_while_holding(
            first, "tier-recompute", 0.2, long_run, stop))
        await asyncio.wait_for(running.wait(), 10)
        competing = asyncio.create_task(leases.every_while_holding(
            second, "tier-recompute", 0.2, competing_run, stop))
        # The second instance tries past the lease's first expiry: each try follows an
        # interval, and it began after the first took the lease.
        await asyncio.wait_for(second.tried_enough.wait(), 30)
        assert runs == ["first"]
        assert first.tries >= 2  # renewed while its run lasted
        done.set()
        stop.set()
        await asyncio.wait_for(asyncio.gather(holding, competing), 10)
        assert "second" not in runs

    async def test_a_run_whose_lease_is_taken_is_cancelled(
            self, sessions: async_sessionmaker[AsyncSession]) -> None:
        happened: list[str] = []
        holder = RecordingLeases(sessions, holder=leases.holder_id("segmenter", "0"),
                                 happened=happened)
        other = leases.Leases(sessions, holder=leases.holder_id("segmenter", "1"))
        running, cancelled, lost = asyncio.Event(), asyncio.Event(), asyncio.Event()

        async def long_run() -> None:
            running.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                happened.append("run cancelled")
                cancelled.set()
                raise

        async def stand_down() -> None:
            happened.append("stood down")
            lost.set()

        stop = asyncio.Event()
        task = asyncio.create_task(leases.every_while_holding(
            holder, "tier-recompute", 0.05, long_run, stop, on_lost=stand_down))
        await asyncio.wait_for(running.wait(), 10)
        # Another instance takes it, as if it had expired (its clock far ahead).
        later = datetime.now(UTC) + timedelta(hours=1)
        assert await other.acquire("tier-recompute", duration=MINUTE, now=later)

        await asyncio.wait_for(asyncio.gather(cancelled.wait(), lost.wait()), 10)
        assert happened == ["stood down", "run cancelled"]
        stop.set()
        await asyncio.wait_for(task, 10)
        assert not task.cancelled() and task.exception() is None
        assert await other.holder_of("tier-recompute") == other.holder

    async def test_a_run_whose_renewal_fails_is_cancelled(
            self, sessions: async_sessionmaker[AsyncSession]) -> None:
        happened: list[str] = []
        holder = RecordingLeases(sessions, holder=leases.holder_id("router", "0"),
                                 happened=happened)
        running, cancelled = asyncio.Event(), asyncio.Event()

        async def long_run() -> None:
            running.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                happened.append("run cancelled")
                cancelled.set()
                raise

        async def stand_down() -> None:
            happened.append("stood down")

        stop = asyncio.Event()
        task = asyncio.create_task(leases.every_while_holding(
            holder, "escalation", 0.05, long_run, stop, on_lost=stand_down))
        await asyncio.wait_for(running.wait(), 10)
        holder.failing = True  # the store goes away while the run lasts

        await asyncio.wait_for(cancelled.wait(), 10)
        assert happened == ["renewal failed", "stood down", "run cancelled"]
        stop.set()
        await asyncio.wait_for(task, 10)  # the job goes on, and ends when stopped
