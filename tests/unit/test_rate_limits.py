"""The per-credential rate limiter: limits' sliding window counter, its expiry swept on
the event loop rather than by a thread started on hits, its memory a credential constant
whatever its limit."""

from __future__ import annotations

import threading

import pytest

from services.core import access, rate_limits, refusals


def _principal(rate: str | None = None) -> access.Principal:
    return access.Principal(credential_id="c-1", role="platform", subject="acme",
                            rate_limit=rate)


class TestRateLimits:
    async def test_over_the_limit_is_refused_with_retry_after(self) -> None:
        limits = rate_limits.RateLimits("3/minute")
        for _ in range(3):
            await limits.check(_principal())
        with pytest.raises(refusals.Refused) as refused:
            await limits.check(_principal())
        assert refused.value.status == 429
        assert 1 <= int(refused.value.headers["Retry-After"]) <= 60

    async def test_a_credentials_own_rate_wins_over_the_default(self) -> None:
        limits = rate_limits.RateLimits("1/minute")
        for _ in range(5):
            await limits.check(_principal("10/minute"))

    async def test_hits_start_no_threads(self) -> None:
        limits = rate_limits.RateLimits("1000/second")
        await limits.check(_principal())
        before = threading.active_count()
        for _ in range(200):
            await limits.check(_principal())
        assert threading.active_count() <= before

    async def test_expired_windows_are_swept(self, monkeypatch: pytest.MonkeyPatch) -> None:
        limits = rate_limits.RateLimits("5/second")
        await limits.check(_principal())
        assert any("/5/1/second" in key for key in limits._storage.storage)
        clock = [rate_limits.time.time()]
        monkeypatch.setattr(rate_limits.time, "time", lambda: clock[0])
        monkeypatch.setattr("limits.storage.memory.time.time", lambda: clock[0])
        clock[0] += 5  # past the window and the one after it
        limits._swept_at -= 2 * limits.SWEEP_SECONDS
        await limits.check(_principal("1000/hour"))  # a different window key
        # The expired 5/second window's counters are gone; the new one's kept.
        held = dict(limits._storage.storage)
        assert not any("/5/1/second" in key for key in held)
        assert [count for key, count in held.items() if "/1000/1/hour" in key] == [1]

    async def test_a_large_limit_holds_two_counters_not_every_hit(self) -> None:
        # 8,640,000 a day (100 a second): a moving window kept each hit of the day and
        # shifted them all on each hit. Two counters, whatever the limit or the hits.
        limits = rate_limits.RateLimits("3/second")
        for _ in range(5_000):
            await limits.check(_principal("8640000/day"))
        assert not any(limits._storage.events.values())
        assert len(limits._storage.storage) <= 2
        assert sum(limits._storage.storage.values()) == 5_000

    @pytest.mark.parametrize(("used_at", "next_at", "more"), [
        (59.5, 59.9, 0),  # the same window: none
        (59.5, 60.2, 1),  # the next: 3 x 59.8/60 rounded down is 2, so one more
        (30.0, 60.2, 1)])  # whenever in the last window it was used
    async def test_the_last_windows_count_weighs_in_rounded_down(
            self, monkeypatch: pytest.MonkeyPatch, used_at: float, next_at: float,
            more: int) -> None:
        """README, "Credentials": a key that used its whole budget in one window may
        send one more as soon as the next starts (windows start at multiples of their
        length): limits' sliding window counter rounds the last window's weighted count
        down. Then it is refused."""
        start = (rate_limits.time.time() // 60 + 10) * 60  # a window's start, ahead
        clock = [start - 60 + used_at]
        monkeypatch.setattr(rate_limits.time, "time", lambda: clock[0])
        monkeypatch.setattr("limits.storage.memory.time.time", lambda: clock[0])
        limits = rate_limits.RateLimits("3/minute")
        for _ in range(3):
            await limits.check(_principal())
        clock[0] = start - 60 + next_at
        for _ in range(more):
            await limits.check(_principal())
        with pytest.raises(refusals.Refused):
            await limits.check(_principal())


class TestAChangedLimit:
    """README, "Credentials": a key's count is kept by its limit's amount and window, so
    a changed limit starts its count again (a lower one is no stop), a limit given back
    finds its count where it was, and the same limit written otherwise is the same
    count. On a still clock, within one window."""

    async def test_each_limit_its_own_count(self, monkeypatch: pytest.MonkeyPatch) -> None:
        now = (rate_limits.time.time() // 60 + 10) * 60  # a window's start, ahead
        monkeypatch.setattr(rate_limits.time, "time", lambda: now)
        monkeypatch.setattr("limits.storage.memory.time.time", lambda: now)
        limits = rate_limits.RateLimits("100/second")

        async def taken(rate: str, count: int) -> list[bool]:
            taken = []
            for _ in range(count):
                try:
                    await limits.check(_principal(rate))
                    taken.append(True)
                except refusals.Refused:
                    taken.append(False)
            return taken

        assert await taken("3/minute", 4) == [True, True, True, False]
        assert await taken("2/minute", 3) == [True, True, False]  # lower: a count anew
        assert await taken("3/minute", 1) == [False]  # back: its count as it was
        assert await taken("3 per minute", 1) == [False]  # the same limit
