"""Topics our services create get their retention (`retention.ms`) on a real broker: what
the erasure answer promises Kafka keeps, and for how long."""

from __future__ import annotations

from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from services.core import kafka, topics
from services.core.settings import Settings
from services.router import priority
from tests.conftest import unique


async def retention_ms(settings: Settings, topic: str) -> str:
    """The topic's retention.ms, as the broker describes it."""
    client = kafka.admin(settings, client_id="test-topic-configs")
    await client.start()
    try:
        [response] = await client.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic)])
    finally:
        await client.close()
    [(_code, _message, _type, _name, entries)] = response.resources
    for name, value, *_ in entries:
        if name == "retention.ms":
            return str(value)
    raise AssertionError(f"no retention.ms for {topic}")


class TestTopicRetention:
    async def test_department_lanes_keep_records_fourteen_days(
            self, settings: Settings) -> None:
        lanes = priority.lane_topics(unique("retention").replace(".", "_").lower())

        await kafka.ensure_topics(settings, lanes)

        for lane in lanes:
            assert await retention_ms(settings, lane) == str(14 * kafka.DAY_MS)


class TestRetentionTable:
    def test_every_pipeline_topic_has_its_retention(self) -> None:
        assert all(kafka.retention_days(topic) for topic in topics.PIPELINE)
        assert {topic: kafka.retention_days(topic) for topic in (
            topics.INCOMING, topics.SEGMENTED, topics.EVENTS, topics.DEAD_LETTERS,
            topics.CUSTOMER_EVENTS)} == {
            topics.INCOMING: 7, topics.SEGMENTED: 7, topics.EVENTS: 30,
            topics.DEAD_LETTERS: 30, topics.CUSTOMER_EVENTS: 7}
        assert kafka.retention_days(topics.CONFIG_CHANGES) == 7
