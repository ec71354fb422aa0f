"""A topic made before with another partition count keeps it (Kafka does not change it):
a service's start says so, naming the topic, rather than leaving `KAFKA_TOPIC_PARTITIONS`
silently not in force. On a real broker."""

from __future__ import annotations

import logging

import pytest

from services.core import kafka
from services.core.settings import Settings
from tests.conftest import unique


def _warned(caplog: pytest.LogCaptureFixture, topic: str) -> list[logging.LogRecord]:
    return [record for record in caplog.records
            if record.levelno == logging.WARNING and getattr(record, "topic", None) == topic]


class TestExistingTopics:
    async def test_a_topic_with_another_partition_count_is_named_with_both_counts(
            self, settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
        topic = unique("partitions-kept")
        await kafka.ensure_topics(settings.model_copy(update={"kafka_topic_partitions": 2}),
                                  [topic])
        caplog.set_level(logging.WARNING, logger="services.core.kafka")

        await kafka.ensure_topics(settings.model_copy(update={"kafka_topic_partitions": 1}),
                                  [topic])

        [warning] = _warned(caplog, topic)
        fields = warning.__dict__
        assert (fields["partitions"], fields["kafka_topic_partitions"]) == (2, 1)
        assert "KAFKA_TOPIC_PARTITIONS" in warning.getMessage()

    async def test_a_topic_with_the_set_count_is_not_named(
            self, settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
        topic = unique("partitions-same")
        await kafka.ensure_topics(settings, [topic])
        caplog.set_level(logging.WARNING, logger="services.core.kafka")

        await kafka.ensure_topics(settings, [topic])

        assert _warned(caplog, topic) == []
