"""The metrics service's lag poll when the broker cannot be read: no figures rather than
stale ones, and a failed run (the periodic task's failure alert stands in for the lag
alerts, which have no figures to read)."""

from __future__ import annotations

import pytest
from aiokafka.errors import KafkaConnectionError

from services.core.settings import Settings
from services.metrics import exporter
from services.metrics.kafka_watch import LagWatch


async def test_a_poll_that_cannot_read_the_broker_clears_the_lag_and_fails(
        monkeypatch: pytest.MonkeyPatch) -> None:
    exporter.CONSUMER_LAG.replace({("router", "tickets.segmented"): 5.0})
    exporter.CONSUMER_COMMITTED_OFFSET.replace({("router", "tickets.segmented"): 12.0})
    watch = LagWatch(Settings())

    async def unreachable() -> None:
        raise KafkaConnectionError("the broker went away")

    monkeypatch.setattr(watch, "_measure", unreachable)
    try:
        with pytest.raises(KafkaConnectionError):
            await watch.poll()
    finally:
        await watch.stop()  # never started: closes the clients it made
    assert exporter.CONSUMER_LAG.values() == {}
    assert exporter.CONSUMER_COMMITTED_OFFSET.values() == {}
