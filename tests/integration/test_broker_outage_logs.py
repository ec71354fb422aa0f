"""The logs while the Kafka broker is down (services/core/library_lines.py): a consumer
and a producer built as the services build them, logging through the services' set-up,
the broker killed. aiokafka's flood of connection errors (hundreds of ERROR lines a
second) comes out as a few warnings of an outage, each kind once an interval with the
count held back."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections import Counter

import pytest

from devtools.kafka_broker import LocalKafka
from services.core import envelope, kafka, library_lines
from services.core.settings import Settings
from services.core.transactional_publisher import TransactionalPublisher
from tests.conftest import unique
from tests.faults.test_broker_outage import own_broker  # noqa: F401
from tests.unit.test_logs import configured

# Shorter than the services' 30 s, so that a line carrying the count comes soon.
INTERVAL_SECONDS = 2.0
# A bound on the wait for it, which ends far sooner.
WITHIN_SECONDS = 60.0


class Logged(logging.Handler):
    """The Kafka client's records (of `logger`'s and those below it) as it logged them,
    before the services' handler's filter."""

    def __init__(self, logger: str = "aiokafka") -> None:
        super().__init__()
        self.count = 0
        self._logger = logger

    def emit(self, record: logging.LogRecord) -> None:
        self.count += record.name.startswith(self._logger)


def client_lines(stream: io.StringIO) -> list[dict[str, object]]:
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    return [line for line in lines if str(line["logger"]).startswith("aiokafka")]


async def test_the_kafka_clients_flood_is_collapsed_with_counts(
        own_broker: LocalKafka,  # noqa: F811
        monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(kafka_bootstrap_servers=own_broker.bootstrap_servers)
    topic = unique("outage-logs")
    await kafka.ensure_topics(settings, [topic])
    logged = Logged()
    monkeypatch.setattr(library_lines, "INTERVAL_SECONDS", INTERVAL_SECONDS)
    with configured("json") as stream:
        logging.getLogger().addHandler(logged)
        consumer = kafka.consumer(settings, topic, group_id=unique("outage-logs"),
                                  client_id="outage-logs")
        producer = kafka.producer(settings, client_id="outage-logs")
        await consumer.start()
        await producer.start()
        try:
            await producer.send_and_wait(topic, b"before")
            while not consumer.assignment():
                await consumer.getmany(timeout_ms=100)
            await asyncio.to_thread(own_broker.kill)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + WITHIN_SECONDS
            while logged.count < 300 \
                    or not any("repeated" in line for line in client_lines(stream)):
                assert loop.time() < deadline, stream.getvalue()[-2000:]
                await consumer.getmany(timeout_ms=200)
        finally:
            await asyncio.wait_for(asyncio.gather(consumer.stop(), producer.stop(),
                                                  return_exceptions=True), 30)
    lines = client_lines(stream)
    outage = [line for line in lines if line.get("fault") == "outage"]
    assert outage, lines
    for line in outage:  # a producer's logged at WARNING already (below)
        assert (line["level"], line["library_level"]) == ("WARNING", "ERROR") or \
            str(line["logger"]).startswith("aiokafka.producer"), line
    assert not [line for line in lines if line["level"] == "ERROR"
                and str(line["message"]).startswith(("Unable connect", "Unable to update"))]
    written = Counter(str(line["message"]).split(":")[0] for line in lines)
    held = sum(int(str(line.get("repeated", 0))) for line in lines)
    # Held back: many more than were written.
    print(written, held)
    assert held > 5 * len(lines), (written, held)


async def test_a_producers_lines_tell_the_outage(
        own_broker: LocalKafka,  # noqa: F811
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The intake's transactional publisher and a plain one publishing while the broker
    is killed (measured: of a 20 s outage, the producers' own lines were aiokafka's
    sender's WARNINGs, `Got error produce response`, hundreds, and `Cannot send`; no
    coordinator's line, FindCoordinator or InitProducerId). None of the Kafka client's
    lines is written at ERROR; the producer's say `fault` outage, and are collapsed."""
    settings = Settings(kafka_bootstrap_servers=own_broker.bootstrap_servers,
                        produce_timeout_seconds=2.0)
    topic = unique("outage-logs")
    await kafka.ensure_topics(settings, [topic])
    ticket_id = unique("t")
    sent = [kafka.Output(topic, "k", envelope.Event(
        type="ticket.received", source="/test", ticket_id=ticket_id,
        correlation_id=ticket_id, data={}))]
    logged = Logged("aiokafka.producer")
    monkeypatch.setattr(library_lines, "INTERVAL_SECONDS", INTERVAL_SECONDS)
    with configured("json") as stream:
        logging.getLogger().addHandler(logged)
        plain = kafka.Publisher(settings, client_id="outage-logs")
        intake = TransactionalPublisher(settings, client_id="outage-logs-intake",
                                        transactional_id=unique("outage-logs"))
        try:
            await plain.publish(sent)
            await intake.publish(sent)
            await asyncio.to_thread(own_broker.kill)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + WITHIN_SECONDS
            while logged.count < 50 or not any(
                    "repeated" in line for line in client_lines(stream)
                    if str(line["logger"]).startswith("aiokafka.producer")):
                assert loop.time() < deadline, stream.getvalue()[-2000:]
                await asyncio.gather(plain.publish(sent), intake.publish(sent),
                                     return_exceptions=True)
            lines = client_lines(stream)  # before the clients stop, the broker away
        finally:
            # Back first: a transactional producer's stop waits for its abort.
            await asyncio.to_thread(own_broker.start)
            await asyncio.wait_for(asyncio.gather(plain.close(), intake.close(),
                                                  return_exceptions=True), 30)
    producers = [line for line in lines if str(line["logger"]).startswith("aiokafka.producer")]
    assert producers, lines
    assert all(line.get("fault") == "outage" for line in producers), producers
    assert not [line for line in lines if line["level"] in ("ERROR", "CRITICAL")], lines
    held = sum(int(str(line.get("repeated", 0))) for line in producers)
    assert held > len(producers), (held, producers)
