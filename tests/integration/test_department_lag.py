"""A department's lag, as the router's load reads it for overflow, on a real broker: every
partition the lane topics have (not the count in the settings), counted from the first
retained offset where the department committed nothing."""

from __future__ import annotations

import uuid
from pathlib import Path

from aiokafka import TopicPartition
from aiokafka.admin import NewTopic, RecordsToDelete

from services.core import db, kafka, migrate, topics
from services.core.settings import Settings
from services.router import overflow, routing
from services.router.load import LoadWatch
from services.router.store import RoutedTickets
from tests import lag_polls


async def test_lag_counts_every_partition_of_the_lanes_from_the_first_retained_offset(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    department = f"lag_{uuid.uuid4().hex[:8]}"
    settings = Settings(kafka_bootstrap_servers=kafka_bootstrap, kafka_topic_partitions=1,
                        database_url=f"sqlite+aiosqlite:///{tmp_path / 'store.db'}")
    first, second, *_ = topics.lane_topics(department)
    admin = kafka.admin(settings, client_id="test-lag")
    await admin.start()
    try:
        # Two partitions each, where the settings say one (a topic keeps its own count).
        await admin.create_topics([NewTopic(lane, 2, 1)
                                   for lane in topics.lane_topics(department)])
        producer = kafka.producer(settings, client_id="test-lag")
        await producer.start()
        try:
            for lane, partition, count in ((first, 0, 3), (first, 1, 2), (second, 1, 1)):
                for _ in range(count):
                    await producer.send_and_wait(lane, b"{}", partition=partition)
        finally:
            await producer.stop()
        # The department took one record of the first lane's partition 0; retention
        # removed the first record of its partition 1, which it never read.
        group = kafka.consumer(settings, group_id=topics.department_group(department),
                               client_id="test-lag")
        await group.start()
        try:
            group.assign([TopicPartition(first, 0)])
            await group.commit({TopicPartition(first, 0): 1})
        finally:
            await group.stop()
        await admin.delete_records({TopicPartition(first, 1): RecordsToDelete(1)})
    finally:
        await admin.close()
    await migrate.upgrade(settings.database_url)
    engine = db.engine(settings.database_url)
    try:
        table = overflowing_on_lag(department)
        watch = LoadWatch(settings, RoutedTickets(db.sessions(engine)), lambda: table)
        await watch.sample()
    finally:
        await engine.dispose()
    loads, states = watch.view()
    # First lane: 3 - 1 on partition 0, 2 - 1 on partition 1; second lane: 1.
    assert loads[department].lag == 4
    assert states[department].overflowing
    # The metrics service reads the same, lane by lane.
    lags = await lag_polls.polled(settings)
    group = topics.department_group(department)
    assert {topic: lag for (of, topic), lag in lags.items()
            if of == group} == {lane: {first: 3, second: 1}.get(lane, 0)
                                for lane in topics.lane_topics(department)}


async def test_a_department_whose_lanes_are_not_there_has_its_lag_unknown(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    department = f"lag_{uuid.uuid4().hex[:8]}"
    settings = Settings(kafka_bootstrap_servers=kafka_bootstrap,
                        database_url=f"sqlite+aiosqlite:///{tmp_path / 'store.db'}")
    await migrate.upgrade(settings.database_url)
    engine = db.engine(settings.database_url)
    try:
        watch = LoadWatch(settings, RoutedTickets(db.sessions(engine)),
                          lambda: overflowing_on_lag(department))
        await watch.sample()
    finally:
        await engine.dispose()
    loads, states = watch.view()
    # Unknown, not 0: an overflow on lag neither starts nor ends on it.
    assert loads[department].lag is None
    assert not states.get(department, overflow.OverflowState()).overflowing


def overflowing_on_lag(department: str) -> routing.RoutingTable:
    """A table whose one department overflows past a lag of 3."""
    return routing.RoutingTable(
        "v1", {"potential": routing.Route("potential", department)}, department,
        department_policies={department: routing.DepartmentPolicy(
            overflow_policy=overflow.OverflowPolicy(to="elsewhere", max_lag=3))})
