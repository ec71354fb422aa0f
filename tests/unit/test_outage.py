"""When to stop waiting for the SQL store and go on without it."""

from __future__ import annotations

from services.core.outage import StoreOutage


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class TestStoreOutage:
    def test_failures_within_the_grace_period_mean_wait(self) -> None:
        clock = Clock()
        outage = StoreOutage(10.0, clock=clock)
        assert outage.failed() is False
        clock.now += 9.9
        assert outage.failed() is False
        assert outage.degraded is False

    def test_past_the_grace_period_go_on_degraded(self) -> None:
        clock = Clock()
        outage = StoreOutage(10.0, clock=clock)
        outage.failed()
        clock.now += 10.0
        assert outage.failed() is True
        assert outage.degraded is True

    def test_recovery_starts_the_grace_period_afresh(self) -> None:
        clock = Clock()
        outage = StoreOutage(10.0, clock=clock)
        outage.failed()
        clock.now += 20.0
        outage.recovered()
        assert outage.degraded is False
        assert outage.failed() is False

    def test_no_grace_degrades_at_once(self) -> None:
        assert StoreOutage(0.0, clock=Clock()).failed() is True
