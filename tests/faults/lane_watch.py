"""A `read_committed` watch on topics (the department queues) while a fault scenario
runs: when each of its tickets first became visible, and how many copies of it.

Times are `time.monotonic()` seconds throughout (the event loop's clock too)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError

from services.core import envelope
from tests.conftest import readable, unique

logger = logging.getLogger(__name__)


class Watch:
    """Follows topics with `read_committed` while a scenario runs: when each ticket of
    the scenario first became visible there, and how many copies of it."""

    def __init__(self, bootstrap: str, topics: Iterable[str],
                 owns: Callable[[envelope.Event], bool]) -> None:
        self.first_seen: dict[str, float] = {}
        self.copies: Counter[str] = Counter()
        self.subject_of: dict[str, str] = {}
        self._owns = owns
        self._consumer = AIOKafkaConsumer(
            *topics, bootstrap_servers=bootstrap, group_id=unique("fault-watch"),
            auto_offset_reset="earliest", enable_auto_commit=False,
            isolation_level="read_committed")
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Watch:
        await self._consumer.start()
        self._task = asyncio.create_task(self._follow(), name="fault-watch")
        return self

    async def __aexit__(self, *_: object) -> None:
        self._stopping = True
        try:
            if self._task is not None:
                async with asyncio.timeout(10):
                    await self._task
        finally:
            await self._consumer.stop()

    def seen_between(self, start: float, end: float) -> int:
        return sum(1 for at in self.first_seen.values() if start <= at <= end)

    async def wait_for(self, ticket_ids: Iterable[str], *, within: float) -> bool:
        wanted = set(ticket_ids)
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if wanted <= self.first_seen.keys():
                return True
            await asyncio.sleep(0.2)
        return False

    async def _follow(self) -> None:
        while not self._stopping:
            try:
                batch = await self._consumer.getmany(timeout_ms=200)
            except KafkaError:
                logger.warning("fault watch: fetch failed; retrying", exc_info=True)
                await asyncio.sleep(0.5)
                continue
            now = time.monotonic()
            for event, _record in readable(batch):
                if event.ticket_id and self._owns(event):
                    self.copies[event.ticket_id] += 1
                    self.first_seen.setdefault(event.ticket_id, now)
                    self.subject_of[event.ticket_id] = str(event.data.get("subject"))
