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

import asyncio
import logging

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from prometheus_client import REGISTRY

from devtools import ports
from services.core import kafka, partition_producers, topics
from services.core.settings import Settings
from services.core.stage import StageRunner
from tests import logged, waits
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
            await waits.until(lambda: len(warnings()) >= 2)
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
            await waits.until(lambda: ticket in received.tickets)
            assert stage.running and not stage.loop.waiting_for_outage
            assert REGISTRY.get_sample_value("routing_stage_waiting_for_outage",
                                             {"stage": name}) == 0
        finally:
            await stage.stop()
    assert not logged.ours(caplog)


async def test_partitions_taken_away_while_it_waits_leave_it_waiting_for_nothing(
        stage_settings: Settings, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """The gauge follows `waiting_for_outage` itself: set at a take-over's end, it kept
    the 1 of one meeting the broker away once the group gave its partitions to others (a
    false RoutingStageWaitingForOutage, and RoutingStageNotProgressing held back)."""
    [nothing_listens] = ports.free_ports(1)
    away = stage_settings.model_copy(
        update={"kafka_bootstrap_servers": f"127.0.0.1:{nothing_listens}"})
    make = kafka.producer

    def producer(settings: Settings, *, client_id: str,
                 transactional_id: str | None = None) -> AIOKafkaProducer:
        return make(away if transactional_id else settings, client_id=client_id,
                    transactional_id=transactional_id)

    monkeypatch.setattr(kafka, "producer", producer)
    name = unique("take-over")
    stage = StageRunner(stage_settings.model_copy(update={"delivery": "exactly_once"}),
                        name=name, source_topic=topics.INCOMING, group_id=name,
                        transform=Received())

    def waiting() -> float | None:
        return REGISTRY.get_sample_value("routing_stage_waiting_for_outage", {"stage": name})

    # Members of the group sorted before the stage's (the round-robin assignor gives the
    # partitions in the order of the members' ids): they take all three.
    others = [kafka.consumer(stage_settings, group_id=name, client_id=f"a-other-{number}")
              for number in range(3)]
    with caplog.at_level(logging.WARNING):
        await stage.start()
        try:
            await waits.until(lambda: any(record.name == partition_producers.__name__
                                           for record in caplog.records))
            assert waiting() == 1
            for other in others:
                other.subscribe([topics.INCOMING])
                await other.start()
            polling = [asyncio.create_task(polled(other)) for other in others]
            try:
                # A rebalance waits for the members' next heartbeat.
                await waits.until(lambda: not stage._consumer.assignment()
                                  and all(other.assignment() for other in others),
                                  within=60, every=0.1)
                assert not stage.loop.waiting_for_outage
                await waits.until(lambda: waiting() == 0, within=60, every=0.1)
            finally:
                for task in polling:
                    task.cancel()
                await asyncio.gather(*polling, return_exceptions=True)
        finally:
            await stage.stop()
            for other in others:
                await other.stop()


async def polled(consumer: AIOKafkaConsumer) -> None:
    """Keep `consumer` in its group (it fetches, nothing is processed)."""
    while True:
        await consumer.getmany(timeout_ms=200)


