"""Where consumer groups stand on the broker: the reading half of `services.core.lag`.

Offsets come from the admin client (committed) and from a consumer without a group
(first and end offsets; read_committed, so the end is the last stable offset). The
partitions are the ones the cluster describes (`kafka.described_partitions`), not a count
from the settings: a topic keeps the count it was created with, or was raised to with
Kafka's own tools.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from services.core import lag


async def positions(admin: AIOKafkaAdminClient, offsets: AIOKafkaConsumer,
                    pairs: Sequence[tuple[str, str]],
                    described: Mapping[str, Sequence[int]],
                    ) -> dict[tuple[str, str], lag.GroupPosition]:
    """Each (group, topic) pair's position on every partition of its topic; pairs whose
    topic is not in `described` are left out."""
    pairs = [(group, topic) for group, topic in pairs if topic in described]
    partitions = {topic: [TopicPartition(topic, p) for p in described[topic]]
                  for _, topic in pairs}
    every = [tp for tps in partitions.values() for tp in tps]
    if not every:
        return {}
    end = await offsets.end_offsets(every)
    beginning = await offsets.beginning_offsets(every)
    # One request a group, for every partition of its topics.
    groups: dict[str, list[TopicPartition]] = {}
    for group, topic in pairs:
        groups.setdefault(group, []).extend(partitions[topic])
    committed = {group: await admin.list_consumer_group_offsets(group, partitions=tps)
                 for group, tps in groups.items()}
    return {(group, topic): lag.position(
        {tp.partition: end[tp] for tp in partitions[topic]},
        {tp.partition: beginning[tp] for tp in partitions[topic]},
        {tp.partition: meta.offset for tp, meta in committed[group].items()
         if tp.topic == topic})
        for group, topic in pairs}
