"""Pipeline stages in-process against a broker of their own (started once for this
folder): its settings, and a plain producer to put records in front of a stage."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from devtools.kafka_broker import LocalKafka
from services.core import kafka, topics
from services.core.settings import Settings
from tests import fresh_broker
from tests.conftest import department_lanes
from tests.integration.stages.stage_records import TABLE


@pytest.fixture(scope="package")
def own_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with LocalKafka(tmp_path_factory.mktemp("stage-kafka")).running() as bootstrap:
        asyncio.run(fresh_broker.coordinating(bootstrap))
        yield bootstrap


@pytest.fixture
async def stage_settings(own_broker: str, tmp_path: Path) -> Settings:
    # Three partitions, whatever the shell says: these tests share partitions out.
    settings = Settings(kafka_bootstrap_servers=own_broker, kafka_topic_partitions=3,
                        database_url=f"sqlite+aiosqlite:///{tmp_path / 'store.db'}")
    await kafka.ensure_topics(settings, [*topics.PIPELINE,
                                         *department_lanes(*TABLE.departments)])
    return settings


@pytest.fixture
async def raw_producer(own_broker: str) -> AsyncIterator[AIOKafkaProducer]:
    producer = AIOKafkaProducer(bootstrap_servers=own_broker)
    await producer.start()
    yield producer
    await producer.stop()
