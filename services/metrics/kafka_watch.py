"""What the metrics service measures on the broker: consumer lag of every stage and
department queue, and the dead letters in `tickets.dlq`.

Both talk to Kafka only: the lag from the admin client's committed offsets and a
consumer's end offsets (read_committed, so the last stable offsets), the dead letters by
reading the topic (offsets would also count transaction markers)."""

from __future__ import annotations

import asyncio
import logging

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError

from services.core import faults, group_lag, kafka, lag, topics
from services.core.settings import Settings
from services.metrics import exporter

logger = logging.getLogger(__name__)


class LagWatch:
    """Measures lag when polled; knows the departments whose queues exist."""

    def __init__(self, settings: Settings) -> None:
        self._admin = kafka.admin(settings, client_id="metrics-lag")
        self._offsets = kafka.consumer(settings, group_id=None, client_id="metrics-lag")
        self.departments: set[str] = set()

    async def start(self) -> None:
        try:
            await self._admin.start()
            await self._offsets.start()
        except BaseException:
            await self.stop()  # a client half started holds connections too
            raise

    async def stop(self) -> None:
        await self._offsets.stop()
        await self._admin.close()

    async def poll(self) -> None:
        """Measure the lag; a poll that cannot leaves no figures rather than stale ones,
        and fails (counted as the periodic task's failed run, which alerts: with no
        figures the lag alerts cannot), the next poll tries again."""
        try:
            await self._measure()
        except (KafkaError, OSError):
            exporter.CONSUMER_LAG.replace({})
            exporter.CONSUMER_COMMITTED_OFFSET.replace({})
            raise

    async def _measure(self) -> None:
        described = await kafka.described_partitions(self._admin)
        measured = await group_lag.positions(self._admin, self._offsets,
                                             lag.watched(described), described)
        lags: dict[tuple[str, ...], float] = {
            pair: float(position.lag) for pair, position in measured.items()}
        committed: dict[tuple[str, ...], float] = {
            pair: float(position.committed) for pair, position in measured.items()}
        exporter.CONSUMER_LAG.replace(lags)
        exporter.CONSUMER_COMMITTED_OFFSET.replace(committed)
        self.departments = lag.departments(described)


class DeadLetterCount:
    """Reads `tickets.dlq` from the start, without a group (commits nothing), and counts.
    The count is shown once the records there at start-up are all read, so a restart
    never looks like a burst of new dead letters."""

    def __init__(self, settings: Settings) -> None:
        self._consumer = kafka.consumer(settings, topics.DEAD_LETTERS, group_id=None,
                                        client_id="metrics-dead-letters")
        self.count = 0

    async def run(self, stop: asyncio.Event) -> None:
        try:
            await self._consumer.start()
            targets: dict[TopicPartition, int] | None = None
            caught_up = False
            while not stop.is_set():
                try:
                    # A record the Kafka client cannot read is a dead letter too, counted
                    # and read past: not the end of the count, nor of the service's health.
                    batch = await faults.fetch_past_unreadable(self._consumer, timeout_ms=500)
                    self.count += sum(len(records) for records in batch.values())
                    if not caught_up:
                        targets = targets or await self._start_offsets()
                        caught_up = targets is not None and await self._reached(targets)
                        if caught_up:
                            logger.info("dead letters counted",
                                        extra={"dead_letters": self.count})
                except (KafkaError, OSError) as exc:
                    logger.warning("dead letters not read", extra={"error": type(exc).__name__})
                    await asyncio.sleep(1.0)
                if caught_up:
                    exporter.DEAD_LETTERS.replace({(): float(self.count)})
        finally:
            await self._consumer.stop()

    async def _start_offsets(self) -> dict[TopicPartition, int] | None:
        assigned = self._consumer.assignment()
        if not assigned:
            return None  # not assigned yet: ask again after the next poll
        offsets: dict[TopicPartition, int] = await self._consumer.end_offsets(list(assigned))
        return offsets

    async def _reached(self, targets: dict[TopicPartition, int]) -> bool:
        for partition, offset in targets.items():
            if await self._consumer.position(partition) < offset:
                return False
        return True
