"""The consumer lag the metrics service exports, polled once on a real broker."""

from __future__ import annotations

from services.core.settings import Settings
from services.metrics import exporter
from services.metrics.kafka_watch import LagWatch


async def polled(settings: Settings) -> dict[tuple[str, ...], float]:
    """routing_consumer_lag by (group, topic), after one poll of kafka_watch.LagWatch."""
    lags = LagWatch(settings)
    await lags.start()
    try:
        await lags.poll()
    finally:
        await lags.stop()
    return exporter.CONSUMER_LAG.values()
