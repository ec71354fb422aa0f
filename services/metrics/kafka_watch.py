"""What the metrics service measures on the broker: consumer lag of every stage and
department queue, and the dead letters in `tickets.dlq`, those waiting among them.

Both talk to Kafka only: the lag from the admin client's committed offsets and a
consumer's end offsets (read_committed, so the last stable offsets), the dead letters by
reading the topic (offsets would also count transaction markers)."""

from __future__ import annotations

import asyncio
import logging
import math
import time

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from services.core import background, faults, group_lag, kafka, lag, replay_markers, topics
from services.core.settings import Settings
from services.metrics import dead_letters_read, exporter, waiting_dead_letters

logger = logging.getLogger(__name__)


class LagWatch:
    """Measures lag when polled; knows the departments whose queues exist."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._admin: AIOKafkaAdminClient | None = None
        self._offsets: AIOKafkaConsumer | None = None
        self.departments: set[str] = set()

    async def start(self) -> None:
        """Start its clients; they are new ones at each start (a Kafka client stopped is
        not started again): a start that failed may be tried again."""
        admin = self._admin = kafka.admin(self._settings, client_id="metrics-lag")
        offsets = self._offsets = kafka.consumer(self._settings, group_id=None,
                                                 client_id="metrics-lag")
        try:
            await admin.start()
            await offsets.start()
        except BaseException:
            await self.stop()  # a client half started holds connections too
            raise

    async def stop(self) -> None:
        offsets, admin, self._offsets, self._admin = self._offsets, self._admin, None, None
        if offsets is not None:
            await offsets.stop()
        if admin is not None:
            await admin.close()

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
        assert self._admin is not None and self._offsets is not None, "started"
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


# How often the dead letters waiting are worked out again at most, and how often the
# topic's first offsets are read to forget those its retention deleted (held and waiting).
SHOW_EVERY_SECONDS = 5.0
GONE_EVERY_SECONDS = 600.0


class DeadLetterCount:
    """Reads `tickets.dlq` from the start, without a group (commits nothing), and counts
    the dead letters it holds: those read, less those its retention deleted since (its
    first offsets read every GONE_EVERY_SECONDS). The count is shown once the records
    there at start-up are all read, so a restart never looks like a burst of new dead
    letters. Those read past the ones there at start-up are counted as they come, each
    once (dead_letters_read.py): what the alert on new dead letters watches.

    With the replay markers (replay_markers.ReplayMarkers, a reader of its own) it also
    shows the dead letters waiting, never replayed (waiting_dead_letters.py): once both
    are read up to where they ended at start-up, and again after each read of either, so
    that a replay lowers it while it runs."""

    def __init__(self, settings: Settings, *,
                 look_seconds: float = replay_markers.LOOK_SECONDS) -> None:
        self._consumer = kafka.consumer(settings, topics.DEAD_LETTERS, group_id=None,
                                        client_id="metrics-dead-letters")
        self.caught_up = False
        self.waiting = waiting_dead_letters.WaitingDeadLetters()
        self.read = dead_letters_read.DeadLettersRead()
        self._markers = replay_markers.ReplayMarkers(
            settings, self.waiting.marked, client_id="metrics-replay-markers",
            unread="every dead letter counts as waiting", look_seconds=look_seconds)
        self._shown_at = self._gone_looked_at = -math.inf

    @property
    def count(self) -> int:
        """The dead letters held in the topic (those its retention deleted forgotten
        with the waiting ones': one definition)."""
        return self.waiting.held_count

    async def run(self, stop: asyncio.Event) -> None:
        async with asyncio.TaskGroup() as readers:
            readers.create_task(self._markers.run(stop, after_batch=self._show_waiting))
            readers.create_task(self._count(stop))

    async def _count(self, stop: asyncio.Event) -> None:
        try:
            await self._consumer.start()
            targets: dict[TopicPartition, int] | None = None
            failures = background.FailuresInARow()
            while not stop.is_set():
                try:
                    # A record the Kafka client cannot read is a dead letter too, counted
                    # and read past: not the end of the count, nor of the service's health.
                    batch = await faults.fetch_past_unreadable(self._consumer, timeout_ms=500)
                    for records in batch.values():
                        for record in records:
                            self.waiting.held(record)
                            if self.read.read(record.partition, record.offset):
                                exporter.DEAD_LETTERS_READ.inc()
                    if not self.caught_up:
                        targets = targets or await self._start_offsets()
                        if targets is not None:
                            self.read.start_at({tp.partition: offset
                                                for tp, offset in targets.items()})
                        self.caught_up = targets is not None and await kafka.caught_up(
                            self._consumer, targets)
                        if self.caught_up:
                            logger.info("dead letters counted",
                                        extra={"dead_letters": self.count})
                    if self.caught_up:
                        # Those forgotten leave the count shown at the next poll.
                        exporter.DEAD_LETTERS.replace({(): float(self.count)})
                        await self._forget_gone()
                    failures.succeeded()
                except (KafkaError, OSError) as exc:
                    await failures.pause_after(exc, stop, warning="dead letters not read",
                                               by=logger)
                self._show_waiting()
        finally:
            await self._consumer.stop()

    def _show_waiting(self) -> None:
        # Worked out again only when a read brought something, and at most once in
        # SHOW_EVERY_SECONDS: each is a pass over every dead letter held, and the readers
        # poll twice a second (a flood of dead letters brings something each time).
        now = time.monotonic()
        if self.caught_up and self._markers.caught_up and self.waiting.changed \
                and now - self._shown_at >= SHOW_EVERY_SECONDS:
            self._shown_at = now
            exporter.record_dead_letters_waiting(self.waiting.figures())

    async def _forget_gone(self) -> None:
        """Once in GONE_EVERY_SECONDS, the dead letters the topic's retention deleted are
        no longer held, nor waiting: none can be listed or replayed."""
        now = time.monotonic()
        if now - self._gone_looked_at < GONE_EVERY_SECONDS:
            return
        self._gone_looked_at = now
        assigned = list(self._consumer.assignment())
        if assigned:
            starts = await self._consumer.beginning_offsets(assigned)
            self.waiting.gone_before({tp.partition: offset for tp, offset in starts.items()})

    async def _start_offsets(self) -> dict[TopicPartition, int] | None:
        assigned = self._consumer.assignment()
        if not assigned:
            return None  # not assigned yet: ask again after the next poll
        offsets: dict[TopicPartition, int] = await self._consumer.end_offsets(list(assigned))
        return offsets
