"""Running one pipeline stage inside a service: clients, task, clean shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from aiokafka import AIOKafkaProducer

from services.core import (
    at_start,
    background,
    broker_start,
    kafka,
    partition_producers,
    pipeline,
)
from services.core.settings import Settings

logger = logging.getLogger(__name__)


class StageRunner:
    """Owns a stage's consumer and producers and the task that runs its loop."""

    def __init__(
        self,
        settings: Settings,
        *,
        name: str,
        source_topic: str,
        group_id: str,
        transform: pipeline.Transform,
        publishes: bool = True,
        follower: bool = False,
        on_ended: Callable[[str], None] | None = None,
    ) -> None:
        """`publishes=False`: a stage that only records (no output records) needs no
        transactions, whatever the delivery setting. `follower`: off the tickets' way to
        their departments, it takes its records in larger batches
        (`kafka_follower_fetch_min_bytes`). `on_ended` is told the stage's name when it
        ends for good (`ended`): a service's context has the process restarted
        (ServiceContext.stage_ended)."""
        self._on_ended = on_ended
        self._settings = settings
        self._consumer = kafka.consumer(
            settings, group_id=group_id, client_id=name,
            fetch_min_bytes=settings.kafka_follower_fetch_min_bytes if follower else 1)
        producers: partition_producers.PartitionProducers | None = None
        self._producer: AIOKafkaProducer | None = None
        if settings.delivery == "exactly_once" and publishes:
            # One producer per input partition, its transactional id stable across
            # instances: a partition's new owner fences the old one (and a restarted
            # instance its killed predecessor) and aborts the transaction it left open.
            producers = partition_producers.PartitionProducers(
                lambda transactional_id: kafka.producer(
                    settings, client_id=name, transactional_id=transactional_id),
                group_id=group_id)
        else:
            self._producer = kafka.producer(settings, client_id=name)
        self.loop = pipeline.StageLoop(
            name=name, consumer=self._consumer, transform=transform,
            producer=self._producer, producers=producers)
        self._consumer.subscribe([source_topic], listener=self.loop.handover)
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._consuming = False
        self._ended = False
        self._start_failures = background.FailuresInARow(at_start.BACKOFF)

    async def start(self) -> None:
        """Start in the background: joining the consumer group can take until a killed
        predecessor's session expires, and the service's HTTP API (the intake above all)
        must not wait for that. `running` tells when the stage consumes."""
        self._task = asyncio.create_task(self._run(), name=self.loop.name)

    async def _run(self) -> None:
        try:
            await self._start_clients()
            self._consuming = True
            await self.loop.run(self._stop)
        except Exception:
            # Told when it happens: a stage is not restarted, its process is.
            logger.exception("stage %s ended with an error", self.loop.name)
            if not self._stop.is_set():
                self._ended = True
                if self._on_ended is not None:
                    self._on_ended(self.loop.name)
            raise

    async def _start_clients(self) -> None:
        """Start the producer (at least once) and the consumer (which joins the group).
        The broker's outage (unreachable, not up yet: broker_start.failure, on the broker
        reached as a service's start reaches it) is waited out, as the service's start
        waits for it and as the stage's batches do once running: a WARNING each try, the
        next after a pause (at_start.BACKOFF), for as long as it lasts. Anything else (a
        mistake: a password refused) is raised: the stage ends for good, its process is
        restarted, and the start then exits 1 naming the setting."""
        # As the start says at each scrape, until the loop runs (which then says it).
        pipeline.WAITING.labels(self.loop.name).set_function(
            lambda: float(self.waiting_to_start))
        # The producer's start bounded: an idempotent producer's waits, raising nothing,
        # for its producer id while the broker is away after its bootstrap (aiokafka asks
        # again and again); given up, a TimeoutError, it is an outage like any other
        # (waited out, the stage named in down() meanwhile). Its start may be tried again
        # after it was given up; a consumer's may not.
        starts: list[Callable[[], Awaitable[None]]] = []
        if self._producer is not None:
            producer = self._producer
            starts.append(lambda: asyncio.wait_for(producer.start(),
                                                   partition_producers.START_SECONDS))
        starts.append(self._consumer.start)
        for start in starts:
            await broker_start.outage_waited_out(
                start, self._settings, what=f"stage {self.loop.name}", by=logger,
                extra={"stage": self.loop.name}, failures=self._start_failures)
        self._start_failures.succeeded()

    @property
    def name(self) -> str:
        return self.loop.name

    @property
    def running(self) -> bool:
        """Consuming, and not waiting for the broker or the database to answer."""
        return self._consuming and self._task is not None and not self._task.done() \
            and not self.loop.waiting_for_outage

    @property
    def waiting_to_start(self) -> bool:
        """Its start met the broker unreachable, and waits for it (not running yet, not
        ended: a mistake met at a later try ends it, and it is named as ended only)."""
        return self._start_failures.count > 0 and not self._ended

    @property
    def ended(self) -> bool:
        """Its loop ended (an error escaped it) before it was told to finish: a stage is
        not restarted, so it is down for good (and stays so while the process shuts down).
        Waiting out an outage is not ending."""
        return self._ended

    def finish(self) -> None:
        """Finish the batch in hand and take no more (`stop` waits for it)."""
        self._stop.set()

    async def stop(self) -> None:
        """Finish the batch in hand, commit it, leave the group, flush the producer."""
        self.finish()
        if self._task is not None:
            if not self._consuming:
                self._task.cancel()  # still starting: nothing in hand to finish
            # An error it ended with was logged then (_run).
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        # The batch in hand is committed by now: leave the group, then close producers.
        closing: list[Callable[[], Awaitable[None]]] = [self._consumer.stop]
        if self._producer is not None:
            closing.append(self._producer.stop)
        if self.loop.producers is not None:
            closing.append(self.loop.producers.close_all)
        for close in closing:
            try:
                await close()
            except Exception:
                logger.exception("stage %s: a Kafka client did not stop cleanly", self.loop.name)

