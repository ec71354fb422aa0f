"""Each input partition's transactional producer is named by the consumer group, the
topic and the partition (README, "Delivery guarantees": `<group>-<topic>-<partition>`):
the same on every instance, so whichever instance is given the partition starts a
producer that fences the previous owner's; and within the ACLs' prefix of the group
(docs/kafka-security.md)."""

from __future__ import annotations

from aiokafka import AIOKafkaProducer, TopicPartition

from services.core import topics
from services.core.partition_producers import PartitionProducers


def never(transactional_id: str) -> AIOKafkaProducer:
    raise AssertionError(f"no producer is built here ({transactional_id})")


def test_an_input_partitions_producer_is_named_by_its_group_topic_and_partition() -> None:
    producers = PartitionProducers(never, group_id=topics.ROUTER_GROUP)
    assert producers.transactional_id(TopicPartition(topics.SEGMENTED, 2)) == \
        "router-tickets.segmented-2"


def test_two_instances_of_a_group_name_a_partitions_producer_alike() -> None:
    partition = TopicPartition(topics.INCOMING, 0)
    first, second = (PartitionProducers(never, group_id="segmenter") for _ in range(2))
    assert first.transactional_id(partition) == second.transactional_id(partition) == \
        "segmenter-tickets.incoming-0"
