"""Each credential's budget of body bytes (`INTAKE_BYTE_RATE_LIMIT`): a rate of requests
does not bound what they cost, as a megabyte of JSON costs the intake some 63 ms of CPU.
Its rate read and checked (services/core/body_bytes.py), its bytes counted by limits'
sliding window counter on memory storage (rate_limits.RateLimits.spend_bytes), the clock set by
the test."""

from __future__ import annotations

import pytest

from services.core import access, body_bytes, rate_limits, refusals, settings
from services.core.settings import Settings

MIB = 1 << 20


def _principal(credential_id: str = "c-1", byte_rate: str | None = None
               ) -> access.Principal:
    return access.Principal(credential_id=credential_id, role="platform", subject="acme",
                            byte_rate_limit=byte_rate)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The limiter's time, at a minute's start (windows start at multiples of their
    length), moved by the test."""
    now = [(rate_limits.time.time() // 60 + 10) * 60]
    monkeypatch.setattr(rate_limits.time, "time", lambda: now[0])
    monkeypatch.setattr("limits.storage.memory.time.time", lambda: now[0])
    return now


class TestTheRateAsWritten:
    @pytest.mark.parametrize(("written", "amount", "seconds"), [
        ("4MiB/second", 4 * MIB, 1),
        ("240 MiB per minute", 240 * MIB, 60),
        ("1048576/second", MIB, 1),
        ("2048KiB/2 seconds", 2 * MIB, 2),
        ("1GiB/hour", 1 << 30, 3600)])
    def test_bytes_a_window(self, written: str, amount: int, seconds: int) -> None:
        item = body_bytes.parse(written)
        assert (item.amount, item.get_expiry()) == (amount, seconds)

    @pytest.mark.parametrize("written", ["4MB/second", "4MiB", "MiB/second", "4MiB/fortnight",
                                         "-4MiB/second", "4.5MiB/second", "2048kib/2 seconds",
                                         "4MiB/SECOND", " 4MiB/second"])
    def test_anything_else_is_refused_saying_what_is_taken(self, written: str) -> None:
        with pytest.raises(ValueError, match="such as 4MiB/second"):
            body_bytes.parse(written)

    def test_a_window_must_hold_the_largest_body(self) -> None:
        """A budget below 1 MiB a window would refuse a body the size limit takes, for
        ever."""
        with pytest.raises(ValueError, match="at least 1MiB a window"):
            body_bytes.parse("1023KiB/second")
        body_bytes.parse(f"{body_bytes.MAX_BODY_BYTES}/second")

    def test_the_setting_is_checked_at_start_naming_it(
            self, monkeypatch: pytest.MonkeyPatch) -> None:
        assert Settings().intake_byte_rate_limit == "4MiB/second"
        monkeypatch.setenv("INTAKE_BYTE_RATE_LIMIT", "4 megabytes a second")
        with pytest.raises(settings.InvalidSettings) as refusal:
            settings.from_environment()
        assert refusal.value.problems == [
            "INTAKE_BYTE_RATE_LIMIT: a number of bytes a window, such as"
            " 4MiB/second, 240 MiB per minute or 1048576/second: units B, KiB, MiB, GiB as"
            " written, the window in lower case; one rate, at most one space between its"
            " parts ('per' takes one each side), none around it"]


class TestWhenItFits:
    """limits' weighted count: previous * previous_ttl / window + current, rounded down;
    previous_ttl is what is left of the current window, current_ttl a window more."""

    def test_now_when_it_fits(self) -> None:
        assert body_bytes.seconds_until_fits(
            budget=100, window=10, cost=50, previous=0, previous_ttl=0, current=50,
            current_ttl=15) == 0

    def test_as_the_last_windows_count_weighs_less(self) -> None:
        # 80 x 5/10 + 10 = 50, and 60 more is over 100: they fit once
        # 80 x ttl/10 + 10 < 41, ttl under 3.875 s, 1.125 s from now.
        assert body_bytes.seconds_until_fits(
            budget=100, window=10, cost=60, previous=80, previous_ttl=5, current=10,
            current_ttl=15) == pytest.approx(1.125)

    def test_in_the_next_window_when_this_ones_count_alone_is_too_much(self) -> None:
        # 90 this window, 3 s of it left; then 90 x ttl/10 < 21 once ttl < 2.33 s.
        assert body_bytes.seconds_until_fits(
            budget=100, window=10, cost=80, previous=0, previous_ttl=0, current=90,
            current_ttl=13) == pytest.approx(3 + 10 * (1 - 21 / 90))


class TestRateLimitsBytes:
    async def test_bytes_within_the_budget_are_counted_and_over_it_refused(
            self, clock: list[float]) -> None:
        limits = rate_limits.RateLimits("100/second", "1MiB/minute")
        limits.spend_bytes(_principal(), 600_000)
        limits.spend_bytes(_principal(), 400_000)
        with pytest.raises(refusals.Refused) as refused:
            limits.spend_bytes(_principal(), 60_000)
        assert (refused.value.status, refused.value.error) == (429, "byte_rate_limited")
        assert refused.value.detail == (
            "this request's 60000 bytes of body are over this credential's budget of"
            " 1MiB/minute (INTAKE_BYTE_RATE_LIMIT); retry after 61s")
        # Not before the next window (60 s), and then once its last's 1,000,000 weigh
        # under 988,577: 60 x (1 - 0.988577) s into it.
        assert refused.value.headers == {"Retry-After": "61"}

    async def test_the_retry_after_says_when_the_window_frees_enough(
            self, clock: list[float]) -> None:
        limits = rate_limits.RateLimits("100/second", "1MiB/minute")
        limits.spend_bytes(_principal(), MIB)
        clock[0] += 90  # half into the next window: the last one's count weighs half
        limits.spend_bytes(_principal(), MIB // 2 - 1)
        with pytest.raises(refusals.Refused) as refused:
            limits.spend_bytes(_principal(), MIB // 2)
        # MIB x ttl/60 + MIB/2 - 1 < MIB/2 + 1 once ttl < 2 x 60 / MIB: the window's end.
        assert refused.value.headers == {"Retry-After": "30"}
        clock[0] += 30
        limits.spend_bytes(_principal(), MIB // 2)

    async def test_a_refused_bodys_bytes_are_not_counted(self, clock: list[float]) -> None:
        limits = rate_limits.RateLimits("100/second", "1MiB/minute")
        limits.spend_bytes(_principal(), MIB - 100)
        for _ in range(3):
            with pytest.raises(refusals.Refused):
                limits.spend_bytes(_principal(), 101)
        limits.spend_bytes(_principal(), 100)

    async def test_each_credential_has_its_own_budget_apart_from_its_requests(
            self, clock: list[float]) -> None:
        limits = rate_limits.RateLimits("2/minute", "1MiB/minute")
        limits.spend_bytes(_principal("c-1"), MIB)
        limits.spend_bytes(_principal("c-2"), MIB)  # another credential's budget
        await limits.check(_principal("c-1"))  # its requests: a budget of their own
        await limits.check(_principal("c-1"))
        with pytest.raises(refusals.Refused) as refused:
            await limits.check(_principal("c-1"))
        assert refused.value.error == "rate_limited"


class TestACredentialsOwnBudget:
    """README, "Credentials": a credential issued with its own `byte_rate_limit` is
    counted against it, not against INTAKE_BYTE_RATE_LIMIT."""

    async def test_a_larger_budget_of_its_own_takes_more_than_the_default(
            self, clock: list[float]) -> None:
        limits = rate_limits.RateLimits("100/second", "1MiB/minute")
        for _ in range(3):
            limits.spend_bytes(_principal(byte_rate="4MiB/minute"), MIB)
        with pytest.raises(refusals.Refused):  # the default's key: 1 MiB a minute
            limits.spend_bytes(_principal("c-2"), MIB + 1)

    async def test_a_smaller_budget_of_its_own_is_refused_naming_it(
            self, clock: list[float]) -> None:
        limits = rate_limits.RateLimits("100/second", "1GiB/second")
        limits.spend_bytes(_principal(byte_rate="1MiB/minute"), MIB)
        with pytest.raises(refusals.Refused) as refused:
            limits.spend_bytes(_principal(byte_rate="1MiB/minute"), 1)
        assert (refused.value.status, refused.value.error) == (429, "byte_rate_limited")
        assert refused.value.detail == (
            "this request's 1 bytes of body are over this credential's budget of"
            " 1MiB/minute (its own byte_rate_limit); retry after 60s")
        limits.spend_bytes(_principal("c-2"), MIB)  # another key: the default's budget


class TestAChangedBudget:
    """README, "Credentials": as a changed rate, a changed `byte_rate_limit` starts its
    count again, a budget given back finds its count where it was, and the same budget
    written otherwise is the same count."""

    async def test_each_budget_its_own_count(self, clock: list[float]) -> None:
        limits = rate_limits.RateLimits("100/second")

        def fits(budget: str, size: int) -> bool:
            try:
                limits.spend_bytes(_principal(byte_rate=budget), size)
            except refusals.Refused:
                return False
            return True

        assert (fits("2MiB/minute", 2 * MIB), fits("2MiB/minute", 1)) == (True, False)
        # Lower: a count anew.
        assert (fits("1MiB/minute", MIB), fits("1MiB/minute", 1)) == (True, False)
        assert not fits("2MiB/minute", 1)  # back: its count as it was
        assert not fits("2 MiB per minute", 1)  # the same budget
