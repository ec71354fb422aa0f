"""The router stage on a real broker: tickets to their lanes, copies routed once, at
least once mode."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError
from prometheus_client import REGISTRY

from services.core import db, envelope, kafka, migrate, topics
from services.core.settings import Settings
from services.core.stage import StageRunner
from services.router import bootstrap as router_bootstrap
from services.router import calendars, lane_check, missing_lanes, worker
from services.router.store import Dispatch, RoutedTickets
from services.segmenter import erasure
from services.segmenter.cache import CustomerCache
from services.segmenter.store import CustomerStore
from tests.conftest import department_lanes, read_topic, unique
from tests.integration.dead_letters.dead_lettering import held_by_the_reader
from tests.integration.stages.stage_records import (
    TABLE,
    owning_every_partition,
    publish,
    router_runner,
    segmented_event,
)


class TestRouterStage:
    async def test_routed_and_fallback_tickets_reach_their_queues_once(
            self, stage_settings: Settings, raw_producer: AIOKafkaProducer) -> None:
        routed, unclaimed = segmented_event("government"), segmented_event("no-such-segment")
        for event in (routed, unclaimed):
            await publish(raw_producer, topics.SEGMENTED, event)
        runner = router_runner(stage_settings, unique("router"))
        await runner.start()
        try:
            wanted = {routed.ticket_id, unclaimed.ticket_id}
            found = await read_topic(stage_settings.kafka_bootstrap_servers,
                                     "dept.public_sector", "dept.customer_care", until=2,
                                     keep=lambda e: e.ticket_id in wanted)
        finally:
            await runner.stop()
        where = {event.ticket_id: (record.topic, event.data["routing"]["reason"])
                 for event, record in found}
        assert len(found) == 2
        assert where == {routed.ticket_id: ("dept.public_sector", "route"),
                         unclaimed.ticket_id: ("dept.customer_care", "fallback")}


class TestCopies:
    async def test_a_second_copy_of_a_routed_ticket_is_not_routed_again(
            self, stage_settings: Settings, raw_producer: AIOKafkaProducer) -> None:
        """Copies of one ticket under other event ids (the intake published it twice):
        one in the queue, whether the copies come in one batch or far apart."""
        await migrate.upgrade(stage_settings.database_url)
        engine = db.engine(stage_settings.database_url)
        later, together = unique("t"), unique("t")
        runner = StageRunner(
            stage_settings, name="router-test", source_topic=topics.SEGMENTED,
            group_id=unique("router"), transform=worker.RouteTicket(
                lambda: TABLE, routed=RoutedTickets(db.sessions(engine))))
        await runner.start()
        try:
            await publish(raw_producer, topics.SEGMENTED, segmented_event("government", later))
            await read_topic(stage_settings.kafka_bootstrap_servers, "dept.public_sector",
                             until=1, settle=0.5, keep=lambda e: e.ticket_id == later)
            for ticket_id in (later, together, together):
                await publish(raw_producer, topics.SEGMENTED,
                              segmented_event("government", ticket_id))
            found = await read_topic(stage_settings.kafka_bootstrap_servers,
                                     "dept.public_sector", until=2, settle=3.0,
                                     keep=lambda e: e.ticket_id in (later, together))
        finally:
            await runner.stop()
            await engine.dispose()
        assert Counter(event.ticket_id for event, _ in found) == {later: 1, together: 1}


class TestErasedCustomers:
    async def test_a_ticket_in_kafka_at_its_customers_erasure_is_routed_not_kept(
            self, stage_settings: Settings, raw_producer: AIOKafkaProducer) -> None:
        """Received before the erasure, routed after it: in its lane (which ages out),
        not in the store; the customer's next ticket, received after, is kept."""
        await migrate.upgrade(stage_settings.database_url)
        engine = db.engine(stage_settings.database_url)
        sessions = db.sessions(engine)
        customer = unique("c")
        in_flight = segmented_event("government", customer_id=customer)
        await erasure.erase_customer(
            CustomerStore(sessions, cache=CustomerCache(max_customers=1, ttl_seconds=1)),
            customer)
        next_contact = segmented_event("government", customer_id=customer)
        wanted = {in_flight.ticket_id, next_contact.ticket_id}
        routed = RoutedTickets(sessions)
        runner = StageRunner(
            stage_settings, name="router-test", source_topic=topics.SEGMENTED,
            group_id=unique("router"), transform=worker.RouteTicket(lambda: TABLE,
                                                                    routed=routed))
        await runner.start()
        try:
            for event in (in_flight, next_contact):
                await publish(raw_producer, topics.SEGMENTED, event)
            found = await read_topic(stage_settings.kafka_bootstrap_servers,
                                     "dept.public_sector", until=2,
                                     keep=lambda e: e.ticket_id in wanted)
        finally:
            await runner.stop()
        try:
            assert in_flight.ticket_id is not None and next_contact.ticket_id is not None
            kept = (await routed.get(in_flight.ticket_id),
                    await routed.get(next_contact.ticket_id))
        finally:
            await engine.dispose()
        assert {event.ticket_id for event, _ in found} == wanted
        assert kept[0] is None and kept[1] is not None


class HeldStore(RoutedTickets):
    """Holds the write of the batch that routed `ticket_id` until released."""

    def __init__(self, sessions: db.async_sessionmaker, ticket_id: str) -> None:
        super().__init__(sessions)
        self.ticket_id = ticket_id
        self.entered, self.released = asyncio.Event(), asyncio.Event()

    async def record_first_dispatches(self, dispatches: Sequence[Dispatch]) -> None:
        if any(dispatch.ticket_id == self.ticket_id for dispatch in dispatches):
            self.entered.set()
            await self.released.wait()
        await super().record_first_dispatches(dispatches)


class TestPartitionsTogether:
    async def test_a_batch_waiting_on_the_store_does_not_hold_up_other_partitions(
            self, stage_settings: Settings, raw_producer: AIOKafkaProducer) -> None:
        """The router keeps each share's batch apart (batches.SharesApart): one
        partition's batch waiting on the store leaves the others routed meanwhile; the
        held one is routed once released."""
        await migrate.upgrade(stage_settings.database_url)
        engine = db.engine(stage_settings.database_url)
        held, other = segmented_event("government"), segmented_event("government")
        assert held.ticket_id is not None
        store = HeldStore(db.sessions(engine), held.ticket_id)
        runner = StageRunner(
            stage_settings, name="router-test", source_topic=topics.SEGMENTED,
            group_id=unique("router"), transform=worker.RouteTicket(lambda: TABLE,
                                                                    routed=store))
        runner.loop.transaction_timeout_seconds = 300  # held past the reads below
        await runner.start()
        try:
            await owning_every_partition(runner, stage_settings.kafka_topic_partitions)
            for event, partition in ((held, 0), (other, 1)):
                if event is other:
                    await asyncio.wait_for(store.entered.wait(), 60)
                await raw_producer.send_and_wait(
                    topics.SEGMENTED, envelope.to_value(event), partition=partition,
                    headers=envelope.to_headers(event))
            meanwhile = await read_topic(stage_settings.kafka_bootstrap_servers,
                                         "dept.public_sector", until=1, within=30,
                                         keep=lambda e: e.ticket_id in (held.ticket_id,
                                                                        other.ticket_id))
            store.released.set()
            both = await read_topic(stage_settings.kafka_bootstrap_servers,
                                    "dept.public_sector", until=2, within=60,
                                    keep=lambda e: e.ticket_id in (held.ticket_id,
                                                                   other.ticket_id))
        finally:
            store.released.set()
            await runner.stop()
            await engine.dispose()
        assert [event.ticket_id for event, _ in meanwhile] == [other.ticket_id]
        assert Counter(event.ticket_id for event, _ in both) == {held.ticket_id: 1,
                                                                 other.ticket_id: 1}


class TestAtLeastOnceMode:
    async def test_routes_without_transactions(
            self, stage_settings: Settings, raw_producer: AIOKafkaProducer) -> None:
        settings = stage_settings.model_copy(update={"delivery": "at_least_once"})
        event = segmented_event("government")
        await publish(raw_producer, topics.SEGMENTED, event)
        runner = router_runner(settings, unique("router"))
        assert runner.loop.producers is None
        await runner.start()
        try:
            found = await read_topic(settings.kafka_bootstrap_servers,
                                     *department_lanes("public_sector"), until=1,
                                     keep=lambda e: e.ticket_id == event.ticket_id)
        finally:
            await runner.stop()
        assert len(found) == 1

    async def test_a_batch_not_committed_is_routed_again_and_nothing_is_lost(
            self, stage_settings: Settings, raw_producer: AIOKafkaProducer,
            monkeypatch: pytest.MonkeyPatch) -> None:
        """At least once, the stage commits its offsets once the broker acknowledged what
        it produced. A failure in between (here the commit meets the broker unreachable,
        once) routes that batch again: its tickets arrive twice, under the same event ids
        (readers tell the copies apart), the others once, none is lost."""
        settings = stage_settings.model_copy(update={"delivery": "at_least_once"})
        source = unique("segmented")  # a topic of its own: the first batch is these tickets'
        await kafka.ensure_topics(settings, [source])
        events = [segmented_event("government") for _ in range(4)]
        for event in events:
            await publish(raw_producer, source, event)
        runner = StageRunner(settings, name="router-test", source_topic=source,
                             group_id=unique("router"),
                             transform=worker.RouteTicket(lambda: TABLE))
        runner.loop._retry_pause = 0.05
        commit = runner.loop._commit
        uncommitted: list[str | None] = []

        async def failing_once(batch: dict[Any, list[Any]]) -> bool:
            if not uncommitted:
                uncommitted.extend(
                    envelope.from_record(record.headers, record.value).ticket_id
                    for records in batch.values() for record in records)
                raise KafkaConnectionError("the broker went away")
            return await commit(batch)

        monkeypatch.setattr(runner.loop, "_commit", failing_once)
        wanted = {event.ticket_id for event in events}
        await runner.start()
        try:
            found = await read_topic(settings.kafka_bootstrap_servers,
                                     *department_lanes("public_sector"),
                                     until=len(events) + 1, within=60,
                                     keep=lambda e: e.ticket_id in wanted)
        finally:
            await runner.stop()
        assert uncommitted and set(uncommitted) <= wanted
        arrived = Counter(event.ticket_id for event, _ in found)
        assert arrived == {ticket_id: 2 if ticket_id in uncommitted else 1
                           for ticket_id in wanted}
        ids = {ticket_id: {event.id for event, _ in found if event.ticket_id == ticket_id}
               for ticket_id in uncommitted}
        assert all(len(copies) == 1 for copies in ids.values())


class TestADepartmentWhoseLanesCannotBeMade:
    async def test_its_ticket_is_dead_lettered_and_the_partition_goes_on(
            self, stage_settings: Settings, raw_producer: AIOKafkaProducer,
            tmp_path: Path) -> None:
        """A table naming a department whose lanes the brokers do not make (here: one
        broker, KAFKA_REPLICATION_FACTOR 2). The send of its ticket waited for the lane as
        for a broker down, for good (routing_stage_waiting_for_outage 1), and the ticket
        behind it on the same partition, for a department whose lanes exist, with it."""
        ghost = unique("ghost").replace("-", "_")
        table_file = tmp_path / "routing.yaml"
        table_file.write_text("version: ghost-1\nfallback_department: customer_care\n"
                              "routes:\n  - {segment: government, department: public_sector}\n"
                              f"  - {{segment: ghostly, department: {ghost}}}\n")
        refused = stage_settings.model_copy(update={"kafka_replication_factor": 2,
                                                    "routing_table_file": table_file})
        live_table = router_bootstrap.live_table(refused)
        lanes = missing_lanes.MissingLanes()
        runner = StageRunner(stage_settings, name="router-test", source_topic=topics.SEGMENTED,
                             group_id=unique("router"), transform=worker.RouteTicket(
                                 lambda: live_table.current, lanes=lanes))
        stuck, behind = segmented_event("ghostly"), segmented_event("government")
        await runner.start()
        try:
            for event in (stuck, behind):  # one key: one partition, in this order
                await publish(raw_producer, topics.SEGMENTED, event)
            await lane_check.ensure_lanes(refused, live_table, lanes)  # the load sample's
            found = await read_topic(stage_settings.kafka_bootstrap_servers,
                                     "dept.public_sector", until=1,
                                     keep=lambda e: e.ticket_id == behind.ticket_id)
            letters = await dead_letters_of(stage_settings.kafka_bootstrap_servers,
                                            stuck.ticket_id)
        finally:
            await runner.stop()
        assert [event.ticket_id for event, _ in found] == [behind.ticket_id]
        [letter] = letters
        assert letter[topics.DLQ_ERROR] == (
            f"department {ghost}'s lanes do not exist and the router could not make them"
            f" (dept.{ghost}.high, dept.{ghost}, dept.{ghost}.low): replay this dead letter"
            " once they do")
        assert REGISTRY.get_sample_value("routing_router_department_lanes_missing",
                                         {"department": ghost}) == 1
        # The router's reader of the dead letters holds the ticket, by the stage that
        # dead-lettered it (tests/integration/test_held_tickets.py: the answers).
        held = await held_by_the_reader(stage_settings, stuck.ticket_id)
        assert (held.stage, held.error_class, held.platform) == (
            "router-test", letter[topics.DLQ_ERROR_CLASS], None)

    async def test_a_closed_department_hands_it_nothing_after_hours(
            self, stage_settings: Settings, raw_producer: AIOKafkaProducer,
            tmp_path: Path) -> None:
        """public_sector, closed now (open one weekday, three days from today), hands its
        tickets to the department whose lanes are missing after hours: it keeps them, as
        an overflow would, the trace saying why. Measured before: dead-lettered."""
        ghost = unique("ghost").replace("-", "_")
        open_day = calendars.WEEKDAYS[(datetime.now(UTC).weekday() + 3) % 7]
        table_file = tmp_path / "routing.yaml"
        table_file.write_text(
            "version: ghost-2\nfallback_department: customer_care\n"
            "routes:\n  - {segment: government, department: public_sector}\n"
            f"departments:\n  customer_care: {{}}\n  {ghost}: {{}}\n  public_sector:\n"
            f"    calendar: {{time_zone: UTC, hours: {{{open_day}: '09:00-17:00'}}}}\n"
            f"    after_hours: {{route_to: {ghost}}}\n")
        refused = stage_settings.model_copy(update={"kafka_replication_factor": 2,
                                                    "routing_table_file": table_file})
        live_table = router_bootstrap.live_table(refused)
        lanes = missing_lanes.MissingLanes()
        await kafka.ensure_topics(stage_settings,
                                  department_lanes("public_sector", "customer_care"))
        await lane_check.ensure_lanes(refused, live_table, lanes)  # the load sample's
        assert set(lanes.departments) == {ghost}
        runner = StageRunner(stage_settings, name="router-test", source_topic=topics.SEGMENTED,
                             group_id=unique("router"), transform=worker.RouteTicket(
                                 lambda: live_table.current, lanes=lanes))
        kept = segmented_event("government")
        await runner.start()
        try:
            await publish(raw_producer, topics.SEGMENTED, kept)
            found = await read_topic(stage_settings.kafka_bootstrap_servers,
                                     "dept.public_sector", until=1,
                                     keep=lambda e: e.ticket_id == kept.ticket_id)
        finally:
            await runner.stop()
        [(event, _)] = found
        assert any(step.endswith(f"but {ghost}'s lanes do not exist (the router could not"
                                 " make them): stays with public_sector")
                   for step in event.data["routing"]["explanation"])


async def dead_letters_of(bootstrap: str, ticket_id: str | None) -> list[dict[str, str]]:
    """The headers of each of the ticket's dead letters, read from the start."""
    found = await read_topic(bootstrap, topics.DEAD_LETTERS, until=1, settle=0.5,
                             keep=lambda e: e.ticket_id == ticket_id)
    return [{name: raw.decode() for name, raw in record.headers}  # type: ignore[attr-defined]
            for _, record in found]
