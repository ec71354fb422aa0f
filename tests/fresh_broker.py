"""A broker the tests start, made ready for what the stages do first: on a fresh broker the
first consumer group and the first transactional producer each make an internal topic
(__consumer_offsets, __transaction_state: ten partitions each, devtools.kafka_broker), which
took 2 to 8 s on a busy machine. Done once where the broker starts, that cost falls in no
test's own bound (a stage waited for with waits.until's 10 s, say)."""

from __future__ import annotations

import asyncio
import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

WITHIN_SECONDS = 120.0


async def coordinating(bootstrap: str) -> None:
    """Return once the broker coordinates a consumer group (joined, its committed offsets
    read) and a transaction (a transactional producer started)."""
    name = f"fresh-broker-{uuid.uuid4().hex[:10]}"  # its topic, group and transactional id
    async with asyncio.timeout(WITHIN_SECONDS):
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(name, 1, 1)])
        finally:
            await admin.close()
        consumer = AIOKafkaConsumer(name, bootstrap_servers=bootstrap, group_id=name,
                                    enable_auto_commit=False)
        await consumer.start()  # joined: it has its assignment
        try:
            await consumer.committed(TopicPartition(name, 0))
        finally:
            await consumer.stop()
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=name)
        await producer.start()  # init_transactions
        await producer.stop()
