"""Running one pipeline stage inside a service: clients, task, clean shutdown."""

from __future__ import annotations

import asyncio
import logging

from services.core import kafka, pipeline
from services.core.settings import Settings

logger = logging.getLogger(__name__)


class StageRunner:
    """Owns a stage's consumer and producer and the task that runs its loop."""

    def __init__(
        self,
        settings: Settings,
        *,
        name: str,
        source_topic: str,
        group_id: str,
        transform: pipeline.Transform,
        publishes: bool = True,
    ) -> None:
        """`publishes=False`: a stage that only records (no output records) needs no
        transactions, whatever the delivery setting."""
        self._consumer = kafka.consumer(settings, source_topic, group_id=group_id,
                                        client_id=name)
        exactly_once = settings.delivery == "exactly_once" and publishes
        # A stable id per instance: a restarted instance fences its killed predecessor
        # and aborts the transaction it left open.
        self._producer = kafka.producer(
            settings, client_id=name,
            transactional_id=f"{group_id}-{settings.instance_id}" if exactly_once else None)
        self.loop = pipeline.StageLoop(
            name=name, consumer=self._consumer, producer=self._producer, transform=transform,
            transactions_for_group=group_id if exactly_once else None)
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._consuming = False

    async def start(self) -> None:
        """Start in the background: joining the consumer group can take until a killed
        predecessor's session expires, and the service's HTTP API (the intake above all)
        must not wait for that. `running` tells when the stage consumes."""
        self._task = asyncio.create_task(self._run(), name=self.loop.name)

    async def _run(self) -> None:
        await self._producer.start()
        await self._consumer.start()
        self._consuming = True
        await self.loop.run(self._stop)

    @property
    def running(self) -> bool:
        return self._consuming and self._task is not None and not self._task.done()

    async def stop(self) -> None:
        """Finish the batch in hand, commit it, leave the group, flush the producer."""
        self._stop.set()
        if self._task is not None:
            if not self._consuming:
                self._task.cancel()  # still starting: nothing in hand to finish
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            except Exception:
                logger.exception("stage %s ended with an error", self.loop.name)
        for client in (self._consumer, self._producer):
            try:
                await client.stop()
            except Exception:
                logger.exception("stage %s: a Kafka client did not stop cleanly", self.loop.name)


def stage_running(app: object) -> bool:
    """Whether the stage a service's lifespan put in `app.state.stage` is running."""
    stage = getattr(getattr(app, "state", None), "stage", None)
    return isinstance(stage, StageRunner) and stage.running
