"""Reads the replay markers (`tickets.dlq.replayed`) for a reader of the dead letters
that must tell those replayed (dead_letter_reading.Replayed): the metrics service's
count of the dead letters waiting, the router's reader of the tickets held. From the
start, without a group (commits nothing), with a consumer of its own.

The router makes the topic at its first replay, so it may not exist yet: then there is
no marker to read (caught up at once), and it is looked for again every `look_seconds`,
then read from its start. Its own consumer, so that the topic missing keeps nothing else
from being read: the dead letters themselves go on regardless. An outage of the broker,
at its start as after, is waited out where it is (a warning, a growing pause).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from services.core import background, dead_letter_reading, faults, kafka, topics
from services.core.settings import Settings

logger = logging.getLogger(__name__)

LOOK_SECONDS = 5.0  # how often a missing marker topic is looked for
NOT_READ = "replay markers not read"


class ReplayMarkers:
    """Hands each marker read to `read`; `caught_up` once those there at start are read
    (at once while the topic does not exist), and stays so: markers written later are
    read as they come. `unread`: what its reader makes of the dead letters while the
    topic is not read, said once when it is not described. `last_error`: the class of
    the error its last try failed with, None once one succeeds."""

    def __init__(self, settings: Settings, read: Callable[[dead_letter_reading.Marker], None],
                 *, client_id: str, unread: str,
                 look_seconds: float = LOOK_SECONDS) -> None:
        self._topic = topics.DEAD_LETTERS_REPLAYED
        self._settings, self._client_id = settings, client_id
        self._read, self._unread, self._look_seconds = read, unread, look_seconds
        self._targets: dict[TopicPartition, int] | None = None
        self._told_missing = False
        self.caught_up = False
        self.last_error: str | None = None  # the class of the last failure in a row's

    async def run(self, stop: asyncio.Event, *, after_batch: Callable[[], None]) -> None:
        """Read until `stop`; `after_batch` is called after each fetch. Clients that could
        not start (the broker away) are stopped, and new ones started after a pause (a
        Kafka client stopped is not started again)."""
        failures = background.FailuresInARow()
        while not stop.is_set():
            admin = kafka.admin(self._settings, client_id=self._client_id)
            consumer = kafka.consumer(self._settings, group_id=None,
                                      client_id=self._client_id)
            self._targets = None  # a new consumer (a run started again) is assigned anew
            try:
                try:
                    await admin.start()
                    await consumer.start()
                except (KafkaError, OSError) as exc:
                    await self._failed(exc, stop, failures)
                    continue
                self._succeeded(failures)
                await self._follow(admin, consumer, stop, failures, after_batch)
            finally:
                await consumer.stop()
                await admin.close()

    async def _follow(self, admin: AIOKafkaAdminClient, consumer: AIOKafkaConsumer,
                      stop: asyncio.Event, failures: background.FailuresInARow,
                      after_batch: Callable[[], None]) -> None:
        while not stop.is_set():
            missing = False
            try:
                missing = not await self._step(admin, consumer)
                self._succeeded(failures)
            except (KafkaError, OSError) as exc:
                await self._failed(exc, stop, failures)
            after_batch()
            if missing:
                await background.pause(stop, self._look_seconds)

    async def _failed(self, error: Exception, stop: asyncio.Event,
                      failures: background.FailuresInARow) -> None:
        self.last_error = type(error).__name__
        await failures.pause_after(error, stop, warning=NOT_READ, by=logger)

    def _succeeded(self, failures: background.FailuresInARow) -> None:
        self.last_error = None
        failures.succeeded()

    async def _step(self, admin: AIOKafkaAdminClient, consumer: AIOKafkaConsumer) -> bool:
        """One fetch of the markers; False if the topic does not exist (yet)."""
        if self._targets is None and not await self._assigned(admin, consumer):
            self.caught_up = True  # no topic, no marker: nothing replayed yet
            return False
        batch = await faults.fetch_past_unreadable(consumer, timeout_ms=500)
        for records in batch.values():
            for marker in records:
                self._read(marker)
        if not self.caught_up and self._targets is not None:
            self.caught_up = await kafka.caught_up(consumer, self._targets)
            if self.caught_up:
                logger.info("replay markers read", extra={"client": self._client_id})
        return True

    async def _assigned(self, admin: AIOKafkaAdminClient, consumer: AIOKafkaConsumer) -> bool:
        """Take the topic's partitions from their start, if it exists now. The cluster's
        description, not a fetch of the topic: naming a missing topic may create it (not
        compacted) on a broker that creates topics on request."""
        partitions = (await kafka.described_partitions(admin)).get(self._topic)
        if partitions is None:
            if not self._told_missing:
                # Once: either is a state that lasts (no replay yet, or an ACL missing).
                self._told_missing = True
                logger.warning(
                    "replay markers topic not described: not made yet (the first replay"
                    " makes it), or this user may not read it (an ACL); until it is read, "
                    + self._unread, extra={"topic": self._topic, "client": self._client_id})
            return False
        assigned = [TopicPartition(self._topic, partition) for partition in partitions]
        consumer.assign(assigned)
        await consumer.seek_to_beginning(*assigned)
        self._targets = await consumer.end_offsets(assigned)
        return True
