"""What the stage tests put in front of a stage and read behind it: tickets as the
segmenter and router read them, the stages under test, dead letters, a group's lag."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from aiokafka import AIOKafkaProducer

from services.core import envelope, kafka, tickets, topics
from services.core import group_lag as core_group_lag
from services.core.settings import Settings
from services.core.stage import StageRunner
from services.router import routing, worker
from services.segmenter import rules
from services.segmenter import worker as segmenter_worker
from services.segmenter.store import CustomerStore
from tests.conftest import unique

TABLE = routing.RoutingTable.simple("t1", {"government": "public_sector"}, "customer_care")


class Received:
    """A stage's transform: notes the tickets it was given, publishes nothing."""

    def __init__(self) -> None:
        self.tickets: list[str] = []

    async def __call__(self, event: envelope.Event) -> list[kafka.Publishable]:
        self.tickets.append(event.ticket_id)
        return []


def segmented_event(segment: str, ticket_id: str | None = None, *,
                    customer_id: str = "c-1") -> envelope.Event:
    ticket_id = ticket_id or unique("t")
    ticket = tickets.SegmentedTicket(
        ticket_id=ticket_id, customer_id=customer_id, subject="s", body="b", channel="email",
        received_at=datetime.now(UTC),
        segmentation=tickets.Segmentation(segment=segment, rule="r", rules_version="v",
                                          customer_known=True, tier="existing"))
    return envelope.Event(type="ticket.segmented", source="/test", ticket_id=ticket_id,
                          correlation_id=ticket_id, data=ticket.model_dump(mode="json"))


async def publish(producer: AIOKafkaProducer, topic: str, event: envelope.Event) -> None:
    await producer.send_and_wait(topic, envelope.to_value(event), key=b"c-1",
                                 headers=envelope.to_headers(event))


async def publish_received(producer: AIOKafkaProducer, ticket_id: str,
                           customer_id: str, topic: str = topics.INCOMING) -> None:
    ticket = tickets.Ticket(ticket_id=ticket_id, customer_id=customer_id, subject="s",
                            body="b", channel="chat", received_at=datetime.now(UTC))
    event = envelope.Event(type="ticket.received", source="/test", ticket_id=ticket_id,
                           correlation_id=ticket_id, data=ticket.model_dump(mode="json"))
    await producer.send_and_wait(topic, envelope.to_value(event),
                                 key=customer_id.encode(), headers=envelope.to_headers(event))


def alter_producers(monkeypatch: pytest.MonkeyPatch,
                    alter: Callable[[AIOKafkaProducer, Settings, str | None], None]) -> None:
    """Every producer the stages make from now on (`kafka.producer`, which they call when
    they need one) is made as always, then handed to `alter` with its settings and
    transactional id: to slow, refuse or hang one of its calls."""
    make = kafka.producer

    def altered(settings: Settings, *, client_id: str,
                transactional_id: str | None = None) -> AIOKafkaProducer:
        producer = make(settings, client_id=client_id, transactional_id=transactional_id)
        alter(producer, settings, transactional_id)
        return producer

    monkeypatch.setattr(kafka, "producer", altered)


async def owning_every_partition(runner: StageRunner, partitions: int) -> None:
    """Wait until the stage owns every partition, each with its producer started: a
    rebalance (the group still forming) waits for the share held by the test, and the
    other partitions wait with it."""
    for _ in range(600):
        assigned = runner._consumer.assignment()
        producers = runner.loop.producers
        if len(assigned) == partitions and producers is not None \
                and all(producers.get(partition) for partition in assigned):
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the stage did not own every partition within 60 s")


def segmenter_runner(settings: Settings, store: CustomerStore,
                     rule_set: rules.RuleSet) -> StageRunner:
    return StageRunner(settings, name="segmenter-test", source_topic=topics.INCOMING,
                       group_id=unique("segmenter"),
                       transform=segmenter_worker.SegmentTicket(
                           lookup=store.customer, current_rules=lambda: rule_set))


def router_runner(settings: Settings, group: str) -> StageRunner:
    return StageRunner(settings, name="router-test", source_topic=topics.SEGMENTED,
                       group_id=group, transform=worker.RouteTicket(lambda: TABLE))


async def dead_letters_marked(bootstrap: str, marker: str, count: int) -> dict[str, dict[str, str]]:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(topics.DEAD_LETTERS, bootstrap_servers=bootstrap,
                                group_id=unique("dlq"), auto_offset_reset="earliest")
    await consumer.start()
    found: dict[str, dict[str, str]] = {}
    try:
        async with asyncio.timeout(20):
            while len(found) < count:
                for records in (await consumer.getmany(timeout_ms=200)).values():
                    for record in records:
                        key = (record.key or b"").decode()
                        if key.startswith(marker):
                            found[key.split(":", 1)[1]] = {
                                k: v.decode() for k, v in record.headers}
    finally:
        await consumer.stop()
    return found


async def group_lag(bootstrap: str, group: str) -> int:
    """The group's lag on `tickets.segmented`, read as the services read it."""
    settings = Settings(kafka_bootstrap_servers=bootstrap)
    admin = kafka.admin(settings, client_id="test-lag")
    await admin.start()
    probe = kafka.consumer(settings, group_id=None, client_id="test-lag")
    await probe.start()
    try:
        measured = await core_group_lag.positions(
            admin, probe, [(group, topics.SEGMENTED)], await kafka.described_partitions(admin))
        return measured[(group, topics.SEGMENTED)].lag
    finally:
        await probe.stop()
        await admin.close()
