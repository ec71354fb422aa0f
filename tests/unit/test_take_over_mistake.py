"""A take-over whose producer's start meets a mistake no wait mends (the transactional
id's ACL revoked: TransactionalIdAuthorizationFailed, broker_start.mistake_in) raises it
out of the stage's loop, which then ends for good (exit 70), as a mistake at the stage's
start does; it was an ERROR at every pause, retried for ever, while /readyz said ready.
The broker's outage is still waited for (test_take_over_outage.py)."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import KafkaConnectionError, TransactionalIdAuthorizationFailed

from services.core import partition_producers


class Refused:
    """A producer whose start fails with `error`."""

    def __init__(self, error: Exception) -> None:
        self.error = error
        self.stopped = False

    async def start(self) -> None:
        raise self.error

    async def stop(self) -> None:
        self.stopped = True


class Consumer:
    """What a take-over asks of the consumer: nothing here, as no producer starts."""

    def __init__(self, assigned: set[TopicPartition]) -> None:
        self.assigned = assigned
        self.resumed: list[TopicPartition] = []

    def assignment(self) -> set[TopicPartition]:
        return self.assigned

    def resume(self, *partitions: TopicPartition) -> None:
        self.resumed.extend(partitions)


async def nothing() -> None:
    return None


def handover(error: Exception) -> tuple[partition_producers.Handover,
                                        partition_producers.PartitionProducers]:
    producers = partition_producers.PartitionProducers(
        lambda _transactional_id: Refused(error),  # type: ignore[arg-type,return-value]
        group_id="group")
    partition = TopicPartition("topic", 0)
    producers.expect([partition])
    return partition_producers.Handover(
        Consumer({partition}), batch_lock=asyncio.Lock(), settle=nothing,
        forget=lambda _revoked: None, producers=producers), producers


async def test_a_mistake_is_raised_out_of_the_take_over() -> None:
    taking, _producers = handover(TransactionalIdAuthorizationFailed())
    with pytest.raises(TransactionalIdAuthorizationFailed):
        await taking.take_over([TopicPartition("topic", 0)])


async def test_the_brokers_outage_is_waited_for() -> None:
    taking, producers = handover(KafkaConnectionError())
    await taking.take_over([TopicPartition("topic", 0)])
    assert producers.waiting_for_outage
