"""kafka.send_all: every record queued, then every acknowledgement awaited; when
queueing fails midway, the acknowledgements already queued are not left for asyncio to
report as never retrieved."""

from __future__ import annotations

import asyncio
import gc
from typing import Any, cast

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from services.core import envelope, kafka

RECORD = envelope.Record(topic="tickets.segmented", key=b"t-1", value=b"{}", headers=[])


class Producer:
    """Queues records, acknowledging none until told; refuses the record numbered
    `refuse` (0 for none)."""

    def __init__(self, refuse: int = 0) -> None:
        self.refuse = refuse
        self.queued: list[asyncio.Future[object]] = []

    async def send(self, topic: str, value: bytes, **_: Any) -> asyncio.Future[object]:
        if len(self.queued) + 1 == self.refuse:
            raise KafkaError("refused")
        future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        self.queued.append(future)
        return future

    def as_producer(self) -> AIOKafkaProducer:
        return cast(AIOKafkaProducer, self)


async def test_every_acknowledgement_is_awaited() -> None:
    producer = Producer()
    sending = asyncio.ensure_future(kafka.send_all(producer.as_producer(), [RECORD] * 3))
    await asyncio.sleep(0)
    assert len(producer.queued) == 3
    for future in producer.queued[:2]:
        future.set_result(None)
    await asyncio.sleep(0)
    assert not sending.done()
    producer.queued[2].set_result(None)
    await sending


async def test_acknowledgements_queued_before_a_refusal_are_not_reported_unretrieved() -> None:
    loop = asyncio.get_running_loop()
    # The loop is the session's: what earlier tests left for the collector is collected
    # first, and only this test's acknowledgements (their failures) count.
    gc.collect()
    fenced = [KafkaError("fenced"), KafkaError("fenced")]
    reported: list[str] = []
    previous = loop.get_exception_handler()

    def report(_: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if any(context.get("exception") is failure for failure in fenced):
            reported.append(str(context["message"]))

    loop.set_exception_handler(report)
    try:
        producer = Producer(refuse=3)
        failed = False
        try:
            await kafka.send_all(producer.as_producer(), [RECORD] * 3)
        except KafkaError:
            failed = True  # the traceback is dropped here: it holds the futures too
        assert failed and len(producer.queued) == 2
        for future, failure in zip(producer.queued, fenced, strict=True):
            future.set_exception(failure)
        await asyncio.sleep(0)  # their done callbacks run
        producer.queued.clear()
        gc.collect()
        assert reported == []
    finally:
        loop.set_exception_handler(previous)

