"""The per-credential rate limiter: limits' moving window, its expiry swept on the
event loop rather than by a thread started on hits."""

from __future__ import annotations

import threading

import pytest

from services.core import access, auth


def _principal(rate: str | None = None) -> access.Principal:
    return access.Principal(credential_id="c-1", role="platform", subject="acme",
                            rate_limit=rate)


class TestRateLimits:
    async def test_over_the_limit_is_refused_with_retry_after(self) -> None:
        limits = auth.RateLimits("3/minute")
        for _ in range(3):
            await limits.check(_principal())
        with pytest.raises(auth.Refused) as refused:
            await limits.check(_principal())
        assert refused.value.status == 429
        assert 1 <= int(refused.value.headers["Retry-After"]) <= 60

    async def test_a_credentials_own_rate_wins_over_the_default(self) -> None:
        limits = auth.RateLimits("1/minute")
        for _ in range(5):
            await limits.check(_principal("10/minute"))

    async def test_hits_start_no_threads(self) -> None:
        limits = auth.RateLimits("1000/second")
        await limits.check(_principal())
        before = threading.active_count()
        for _ in range(200):
            await limits.check(_principal())
        assert threading.active_count() <= before

    async def test_expired_windows_are_swept(self, monkeypatch: pytest.MonkeyPatch) -> None:
        limits = auth.RateLimits("5/second")
        await limits.check(_principal())
        assert limits._storage.events
        clock = [auth.time.time()]
        monkeypatch.setattr(auth.time, "time", lambda: clock[0])
        clock[0] += 5  # past the window
        limits._swept_at -= 2 * limits.SWEEP_SECONDS
        await limits.check(_principal("1000/hour"))  # a different window key
        held = {key: len(entries) for key, entries in limits._storage.events.items()}
        # The expired 5/second window's entries are gone; the new one's kept.
        assert held == {"LIMITER/c-1/5/1/second": 0, "LIMITER/c-1/1000/1/hour": 1}
