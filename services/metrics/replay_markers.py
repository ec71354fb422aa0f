"""Reads the replay markers (`tickets.dlq.replayed`) for the count of the dead letters
waiting: from the start, without a group (commits nothing), with a consumer of its own.

The router makes the topic at its first replay, so it may not exist yet: then there is
no marker to read (caught up at once), and it is looked for again every `look_seconds`,
then read from its start. Its own consumer, so that the topic missing keeps nothing else
from being read: the dead letters themselves, and their count, go on regardless.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError

from services.core import background, dead_letter_reading, faults, kafka, topics
from services.core.settings import Settings

logger = logging.getLogger(__name__)

LOOK_SECONDS = 5.0  # how often a missing marker topic is looked for


class ReplayMarkers:
    """Hands each marker read to `read`; `caught_up` once those there at start are read
    (at once while the topic does not exist), and stays so: markers written later are
    read as they come."""

    def __init__(self, settings: Settings, read: Callable[[dead_letter_reading.Marker], None],
                 *, look_seconds: float = LOOK_SECONDS) -> None:
        self._topic = topics.DEAD_LETTERS_REPLAYED
        self._consumer = kafka.consumer(settings, group_id=None,
                                        client_id="metrics-replay-markers")
        self._admin = kafka.admin(settings, client_id="metrics-replay-markers")
        self._read, self._look_seconds = read, look_seconds
        self._targets: dict[TopicPartition, int] | None = None
        self._told_missing = False
        self.caught_up = False

    async def run(self, stop: asyncio.Event, *, after_batch: Callable[[], None]) -> None:
        """Read until `stop`; `after_batch` is called after each fetch."""
        try:
            await self._admin.start()
            await self._consumer.start()
            failures = background.FailuresInARow()
            while not stop.is_set():
                try:
                    await self._step(stop)
                    failures.succeeded()
                except (KafkaError, OSError) as exc:
                    await failures.pause_after(exc, stop, warning="replay markers not read",
                                               by=logger)
                after_batch()
        finally:
            await self._consumer.stop()
            await self._admin.close()

    async def _step(self, stop: asyncio.Event) -> None:
        if self._targets is None and not await self._assigned():
            self.caught_up = True  # no topic, no marker: nothing replayed yet
            await background.pause(stop, self._look_seconds)
            return
        batch = await faults.fetch_past_unreadable(self._consumer, timeout_ms=500)
        for records in batch.values():
            for marker in records:
                self._read(marker)
        if not self.caught_up and self._targets is not None:
            self.caught_up = await kafka.caught_up(self._consumer, self._targets)
            if self.caught_up:
                logger.info("replay markers read")

    async def _assigned(self) -> bool:
        """Take the topic's partitions from their start, if it exists now. The cluster's
        description, not a fetch of the topic: naming a missing topic may create it (not
        compacted) on a broker that creates topics on request."""
        partitions = (await kafka.described_partitions(self._admin)).get(self._topic)
        if partitions is None:
            if not self._told_missing:
                # Once: either is a state that lasts (no replay yet, or an ACL missing).
                self._told_missing = True
                logger.warning(
                    "replay markers topic not described: not made yet (the first replay"
                    " makes it), or this user may not read it (an ACL); until it is read,"
                    " every dead letter counts as waiting", extra={"topic": self._topic})
            return False
        assigned = [TopicPartition(self._topic, partition) for partition in partitions]
        self._consumer.assign(assigned)
        await self._consumer.seek_to_beginning(*assigned)
        self._targets = await self._consumer.end_offsets(assigned)
        return True

