"""README "On call": an exactly-once stage takes each partition it is given over by
starting the partition's transactional producer, then reading its committed offset. A
take-over that meets the broker unreachable is waited out as the stage's batches are: a
WARNING without a traceback naming the partitions, the next try after a pause growing
from 1 s (it was an ERROR with a traceback and another try at every pass of the loop,
a dozen a second), the stage not ready and `routing_stage_waiting_for_outage{stage}` 1
meanwhile (it said ready, though it could process nothing); then it runs.

The partitions' producers are built against a port nothing listens on while the test
holds the broker away (a real producer meeting an unreachable broker), the consumer
against the stage's broker."""

from __future__ import annotations

import logging

import pytest
from aiokafka import AIOKafkaProducer
from prometheus_client import REGISTRY

from devtools import ports
from services.core import kafka, partition_producers, topics
from services.core.settings import Settings
from services.core.stage import StageRunner
from tests import served
from tests.conftest import unique
from tests.integration.stages.stage_records import (
    Received,
    owning_every_partition,
    publish_received,
)


async def test_a_take_over_meeting_the_broker_away_waits_for_it(
        stage_settings: Settings, raw_producer: AIOKafkaProducer,
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    [nothing_listens] = ports.free_ports(1)
    away = stage_settings.model_copy(
        update={"kafka_bootstrap_servers": f"127.0.0.1:{nothing_listens}"})
    broker_away = True
    make = kafka.producer

    def producer(settings: Settings, *, client_id: str,
                 transactional_id: str | None = None) -> AIOKafkaProducer:
        chosen = away if broker_away and transactional_id else settings
        return make(chosen, client_id=client_id, transactional_id=transactional_id)

    monkeypatch.setattr(kafka, "producer", producer)
    name, received = unique("take-over"), Received()
    stage = StageRunner(stage_settings.model_copy(update={"delivery": "exactly_once"}),
                        name=name, source_topic=topics.INCOMING, group_id=name,
                        transform=received)

    def warnings() -> list[logging.LogRecord]:
        return [record for record in caplog.records
                if record.name == partition_producers.__name__]

    with caplog.at_level(logging.WARNING):
        await stage.start()
        try:
            await served.until(lambda: len(warnings()) >= 2)
            assert stage.loop.waiting_for_outage
            assert not stage.running
            assert REGISTRY.get_sample_value("routing_stage_waiting_for_outage",
                                             {"stage": name}) == 1
            first, second = warnings()[:2]
            assert [first.getMessage(), second.getMessage()] == [
                "partitions not taken over: the broker is unreachable; next try in 1 s",
                "partitions not taken over: the broker is unreachable; next try in 2 s"]
            assert (first.levelno, first.exc_info) == (logging.WARNING, None)

            broker_away = False
            await owning_every_partition(stage, 3)
            ticket = unique("t")
            await publish_received(raw_producer, ticket, "c-1")
            await served.until(lambda: ticket in received.tickets)
            assert stage.running and not stage.loop.waiting_for_outage
            assert REGISTRY.get_sample_value("routing_stage_waiting_for_outage",
                                             {"stage": name}) == 0
        finally:
            await stage.stop()
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR
                and record.name.startswith("services")]
