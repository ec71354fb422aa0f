"""Fixtures of the dead-letter tests on a real broker. The broker and `tickets.dlq` are
shared with other tests, so each test dead-letters records of a source topic of its own
(`source_topic`) and selects by it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaProducer

from services.core import kafka, topics
from services.core.settings import Settings
from tests.conftest import unique


@pytest.fixture
async def settings(kafka_bootstrap: str) -> Settings:
    settings = Settings(kafka_bootstrap_servers=kafka_bootstrap)
    await kafka.ensure_topics(settings, topics.PIPELINE)
    return settings


@pytest.fixture
async def source_topic(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> str:
    """A topic only this test dead-letters from, so its selections see only its records;
    taken for a stage's input, the only topics a replay writes to (the real ones are
    read by the other tests' stages)."""
    name = unique("dlq-source")
    await kafka.ensure_topics(settings, [name])
    monkeypatch.setattr(topics, "STAGE_INPUTS", topics.STAGE_INPUTS | {name})
    return name


@pytest.fixture
async def producer(kafka_bootstrap: str) -> AsyncIterator[AIOKafkaProducer]:
    client = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await client.start()
    yield client
    await client.stop()
