"""The segmenter stage on a real broker, and a clean shutdown of a stage."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError

from services.core import db, envelope, kafka, migrate, tickets, topics
from services.core.settings import Settings
from services.core.stage import StageRunner
from services.segmenter import rules_file, worker
from services.segmenter.cache import CustomerCache
from services.segmenter.models import CustomerRow, PurchaseRow
from services.segmenter.profiles import Customer, CustomerProfile, CustomerType, Tier, ValueFeatures
from services.segmenter.store import CustomerStore
from tests.conftest import read_topic, unique
from tests.integration.stages.stage_records import (
    group_lag,
    owning_every_partition,
    publish,
    publish_received,
    router_runner,
    segmented_event,
    segmenter_runner,
)


class TestShutdown:
    async def test_stop_commits_what_was_processed(
            self, stage_settings: Settings, raw_producer: AIOKafkaProducer) -> None:
        group = unique("router")
        for _ in range(20):
            await publish(raw_producer, topics.SEGMENTED, segmented_event("government"))
        runner = router_runner(stage_settings, group)
        await runner.start()
        async with asyncio.timeout(30):
            while True:
                await asyncio.sleep(0.2)
                if await group_lag(stage_settings.kafka_bootstrap_servers, group) == 0:
                    break
        await runner.stop()
        assert await group_lag(stage_settings.kafka_bootstrap_servers, group) == 0


class TestSegmenterStage:
    async def test_customers_are_segmented_from_the_store(
            self, stage_settings: Settings, raw_producer: AIOKafkaProducer) -> None:
        await migrate.upgrade(stage_settings.database_url)
        engine = db.engine(stage_settings.database_url)
        async with engine.begin() as connection:
            await connection.execute(CustomerRow.__table__.insert(), [
                {"customer_id": "gov-1", "customer_type": "government", "attributes": {}},
                {"customer_id": "ind-1", "customer_type": "individual", "attributes": {},
                 "signup_date": date(2020, 1, 1)}])
            await connection.execute(PurchaseRow.__table__.insert(), [
                {"customer_id": "ind-1", "amount": 20, "currency": "EUR",
                 "purchased_at": datetime.now(UTC)}])
        store = CustomerStore(db.sessions(engine),
                              cache=CustomerCache(max_customers=100, ttl_seconds=60))
        await store.refresh_features(["gov-1", "ind-1"], now=datetime.now(UTC))
        rule_set = rules_file.load(Path("config/segments.yaml"))
        expected = {"gov-1": ("government", "public-sector", True),
                    "ind-1": ("general", "default", True),
                    "stranger": ("potential", "prospects", False)}
        sent: dict[str, str] = {}
        for customer_id in expected:
            ticket_id = unique("t")
            await publish_received(raw_producer, ticket_id, customer_id)
            sent[ticket_id] = customer_id
        runner = segmenter_runner(stage_settings, store, rule_set)
        await runner.start()
        try:
            found = await read_topic(stage_settings.kafka_bootstrap_servers, topics.SEGMENTED,
                                     until=3, keep=lambda e: e.ticket_id in sent)
        finally:
            await runner.stop()
            await engine.dispose()
        got: dict[str, Any] = {
            sent[e.ticket_id]: (e.data["segmentation"]["segment"],
                                e.data["segmentation"]["rule"],
                                e.data["segmentation"]["customer_known"]) for e, _ in found}
        assert got == expected
        assert all(e.data["segmentation"]["rules_version"] == rule_set.version
                   for e, _ in found)


class HeldCustomers(CustomerStore):
    """Holds the loading of any batch holding `customer_id` until released."""

    def __init__(self, sessions: db.async_sessionmaker, customer_id: str) -> None:
        super().__init__(sessions, cache=CustomerCache(max_customers=100, ttl_seconds=60))
        self.customer_id = customer_id
        self.entered, self.released = asyncio.Event(), asyncio.Event()

    async def preload(self, customer_ids: set[str]) -> bool:
        if self.customer_id in customer_ids:
            self.entered.set()
            await self.released.wait()
        return await super().preload(customer_ids)


class TestPartitionsTogether:
    async def test_a_batch_waiting_on_the_store_does_not_hold_up_other_partitions(
            self, stage_settings: Settings, raw_producer: AIOKafkaProducer) -> None:
        """The segmenter keeps each share's batch apart (batches.SharesApart): one
        partition's batch waiting on the customer store leaves the others segmented
        meanwhile; the held one is segmented once released."""
        await migrate.upgrade(stage_settings.database_url)
        engine = db.engine(stage_settings.database_url)
        held, other = unique("held"), unique("other")  # a customer each, both unknown
        store = HeldCustomers(db.sessions(engine), held)
        rule_set = rules_file.load(Path("config/segments.yaml"))
        runner = StageRunner(
            stage_settings, name="segmenter-test", source_topic=topics.INCOMING,
            group_id=unique("segmenter"), transform=worker.SegmentTicket(
                lookup=store.customer, preload=store.preload,
                current_rules=lambda: rule_set))
        runner.loop.transaction_timeout_seconds = 300  # held past the reads below
        ticket_ids = {held: unique("t"), other: unique("t")}
        await runner.start()
        try:
            await owning_every_partition(runner, stage_settings.kafka_topic_partitions)
            for customer_id, partition in ((held, 0), (other, 1)):
                if customer_id == other:
                    await asyncio.wait_for(store.entered.wait(), 60)
                ticket = tickets.Ticket(ticket_id=ticket_ids[customer_id],
                                        customer_id=customer_id, subject="s", body="b",
                                        channel="chat", received_at=datetime.now(UTC))
                event = envelope.Event(type="ticket.received", source="/test",
                                       ticket_id=ticket.ticket_id,
                                       correlation_id=ticket.ticket_id,
                                       data=ticket.model_dump(mode="json"))
                await raw_producer.send_and_wait(
                    topics.INCOMING, envelope.to_value(event), key=customer_id.encode(),
                    partition=partition, headers=envelope.to_headers(event))
            wanted = set(ticket_ids.values())
            meanwhile = await read_topic(stage_settings.kafka_bootstrap_servers,
                                         topics.SEGMENTED, until=1, within=30,
                                         keep=lambda e: e.ticket_id in wanted)
            store.released.set()
            both = await read_topic(stage_settings.kafka_bootstrap_servers,
                                    topics.SEGMENTED, until=2, within=60,
                                    keep=lambda e: e.ticket_id in wanted)
        finally:
            store.released.set()
            await runner.stop()
            await engine.dispose()
        assert [event.ticket_id for event, _ in meanwhile] == [ticket_ids[other]]
        assert Counter(event.ticket_id for event, _ in both) == {ticket_ids[held]: 1,
                                                                 ticket_ids[other]: 1}


class TestTicketsCounted:
    @pytest.mark.parametrize("delivery", ["exactly_once", "at_least_once"])
    async def test_a_share_whose_sends_failed_once_counts_its_tickets_once(
            self, stage_settings: Settings, raw_producer: AIOKafkaProducer,
            monkeypatch: pytest.MonkeyPatch, delivery: str) -> None:
        """A customer's tickets count (the `tickets raised` feature) when their share is
        committed: the share's first attempt, transformed, fails sending its records (in
        its transaction, exactly once) and is processed again; the ticket counts once."""
        customer_id = unique("c")
        sends = kafka.send_all
        failed: list[bool] = []

        async def failing_once(*args: Any, **kwargs: Any) -> None:
            if not failed:
                failed.append(True)
                raise KafkaConnectionError("the broker went away")
            await sends(*args, **kwargs)

        async def lookup(wanted: str, **_: Any) -> Customer:
            return Customer(wanted, CustomerProfile(wanted, CustomerType.INDIVIDUAL),
                            ValueFeatures(), Tier.EXISTING)

        segment = worker.SegmentTicket(
            lookup=lookup, current_rules=lambda: rules_file.load(Path("config/segments.yaml")))
        # A topic of its own: the first share sent, the one failing, is this ticket's.
        source = unique("incoming")
        await kafka.ensure_topics(stage_settings, [source])
        runner = StageRunner(stage_settings.model_copy(update={"delivery": delivery}),
                             name="segmenter-test", source_topic=source,
                             group_id=unique("segmenter"), transform=segment)
        runner.loop._retry_pause = 0.05
        ticket_id = unique("t")
        await publish_received(raw_producer, ticket_id, customer_id, topic=source)
        monkeypatch.setattr(kafka, "send_all", failing_once)
        await runner.start()
        try:
            found = await read_topic(stage_settings.kafka_bootstrap_servers, topics.SEGMENTED,
                                     until=1, within=60, keep=lambda e: e.ticket_id == ticket_id)
        finally:
            await runner.stop()
        assert failed
        assert [event.ticket_id for event, _ in found] == [ticket_id]
        assert segment.tally == {customer_id: 1}
