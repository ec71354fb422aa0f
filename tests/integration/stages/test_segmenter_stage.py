"""The segmenter stage on a real broker, and a clean shutdown of a stage."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer

from services.core import db, migrate, topics
from services.core.settings import Settings
from services.segmenter import rules_file
from services.segmenter.cache import CustomerCache
from services.segmenter.models import CustomerRow, PurchaseRow
from services.segmenter.store import CustomerStore
from tests.conftest import read_topic, unique
from tests.integration.stages.stage_records import (
    group_lag,
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
