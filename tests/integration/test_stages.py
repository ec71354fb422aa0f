"""Pipeline stages in-process against a broker of their own: routing, dead letters,
retries after transient failures, clean shutdown."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from devtools.kafka_broker import LocalKafka
from services.core import db, envelope, kafka, migrate, tickets, topics
from services.core.settings import Settings
from services.core.stage import StageRunner
from services.router import routing, worker
from services.router.store import RoutedTickets
from services.segmenter import rules, rules_file
from services.segmenter import worker as segmenter_worker
from services.segmenter.cache import CustomerCache
from services.segmenter.models import CustomerRow, PurchaseRow
from services.segmenter.store import CustomerStore
from tests.conftest import department_lanes, read_topic, unique

TABLE = routing.RoutingTable.simple("t1", {"government": "public_sector"}, "customer_care")


@pytest.fixture(scope="module")
def own_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with LocalKafka(tmp_path_factory.mktemp("stage-kafka")).running() as bootstrap:
        yield bootstrap


@pytest.fixture
async def stage_settings(own_broker: str, tmp_path: Path) -> Settings:
    settings = Settings(kafka_bootstrap_servers=own_broker,
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


def segmented_event(segment: str, ticket_id: str | None = None) -> envelope.Event:
    ticket_id = ticket_id or unique("t")
    ticket = tickets.SegmentedTicket(
        ticket_id=ticket_id, customer_id="c-1", subject="s", body="b", channel="email",
        received_at=datetime.now(UTC),
        segmentation=tickets.Segmentation(segment=segment, rule="r", rules_version="v",
                                          customer_known=True, tier="existing"))
    return envelope.Event(type="ticket.segmented", source="/test", ticket_id=ticket_id,
                          correlation_id=ticket_id, data=ticket.model_dump(mode="json"))


async def publish(producer: AIOKafkaProducer, topic: str, event: envelope.Event) -> None:
    await producer.send_and_wait(topic, envelope.to_value(event), key=b"c-1",
                                 headers=envelope.to_headers(event))


async def publish_received(producer: AIOKafkaProducer, ticket_id: str,
                           customer_id: str) -> None:
    ticket = tickets.Ticket(ticket_id=ticket_id, customer_id=customer_id, subject="s",
                            body="b", channel="chat", received_at=datetime.now(UTC))
    event = envelope.Event(type="ticket.received", source="/test", ticket_id=ticket_id,
                           correlation_id=ticket_id, data=ticket.model_dump(mode="json"))
    await producer.send_and_wait(topics.INCOMING, envelope.to_value(event),
                                 key=customer_id.encode(), headers=envelope.to_headers(event))


def segmenter_runner(settings: Settings, store: CustomerStore,
                     rule_set: rules.RuleSet) -> StageRunner:
    return StageRunner(settings, name="segmenter-test", source_topic=topics.INCOMING,
                       group_id=unique("segmenter"),
                       transform=segmenter_worker.SegmentTicket(
                           lookup=store.customer, current_rules=lambda: rule_set))


def router_runner(settings: Settings, group: str) -> StageRunner:
    return StageRunner(settings, name="router-test", source_topic=topics.SEGMENTED,
                       group_id=group, transform=worker.RouteTicket(lambda: TABLE))


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


class TestDeadLetters:
    async def test_poison_records_go_to_the_dlq_with_reasons_and_good_ones_flow(
            self, stage_settings: Settings, raw_producer: AIOKafkaProducer) -> None:
        good = segmented_event("government")
        marker = unique("poison")
        headers = envelope.to_headers(good)
        poison: dict[str, tuple[bytes, list[tuple[str, bytes]]]] = {
            "not-json": (b"\xff not json", headers),
            "no-headers": (b"{}", []),
            "schema-version": (envelope.to_value(good),
                               [(k, b"9" if k == "ce_schemaversion" else v)
                                for k, v in headers]),
            "missing-fields": (b'{"ticket_id": "x"}', headers),
        }
        for name, (value, record_headers) in poison.items():
            await raw_producer.send_and_wait(topics.SEGMENTED, value, key=f"{marker}:{name}"
                                             .encode(), headers=record_headers)
        await publish(raw_producer, topics.SEGMENTED, good)
        runner = router_runner(stage_settings, unique("router"))
        await runner.start()
        try:
            delivered = await read_topic(stage_settings.kafka_bootstrap_servers,
                                         "dept.public_sector", until=1,
                                         keep=lambda e: e.ticket_id == good.ticket_id)
            dead = await _dead_letters(stage_settings.kafka_bootstrap_servers, marker, 4)
        finally:
            await runner.stop()
        assert len(delivered) == 1
        assert set(dead) == set(poison)
        for name, dead_headers in dead.items():
            assert dead_headers["dlq_source_topic"] == topics.SEGMENTED
            assert int(dead_headers["dlq_source_offset"]) >= 0
            assert dead_headers["dlq_source_partition"].isdigit()
            assert dead_headers["dlq_error"], name
        assert dead["not-json"]["dlq_error_class"] == "EnvelopeError"
        assert "missing CloudEvents headers" in dead["no-headers"]["dlq_error"]
        assert "unknown schema version" in dead["schema-version"]["dlq_error"]
        assert dead["missing-fields"]["dlq_error_class"] == "ValidationError"
        assert "customer_id: Field required" in dead["missing-fields"]["dlq_error"]


async def _dead_letters(bootstrap: str, marker: str, count: int) -> dict[str, dict[str, str]]:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(topics.DEAD_LETTERS, bootstrap_servers=bootstrap,
                                group_id=unique("dlq"), auto_offset_reset="earliest")
    await consumer.start()
    found: dict[str, dict[str, str]] = {}
    try:
        async with asyncio.timeout(20):
            while len(found) < count:
                for records in (await consumer.getmany(timeout_ms=200)).values():
                    for record in records:
                        key = (record.key or b"").decode()
                        if key.startswith(marker):
                            found[key.split(":", 1)[1]] = {
                                k: v.decode() for k, v in record.headers}
    finally:
        await consumer.stop()
    return found


class TestRetries:
    async def test_a_transient_failure_retries_the_batch_and_loses_nothing(
            self, stage_settings: Settings, raw_producer: AIOKafkaProducer) -> None:
        calls = {"n": 0}
        real = worker.RouteTicket(lambda: TABLE)

        async def flaky(event: envelope.Event) -> list[kafka.Output]:
            calls["n"] += 1
            if calls["n"] == 1:
                raise ConnectionError("database went away")
            return await real(event)

        event = segmented_event("government")
        await publish(raw_producer, topics.SEGMENTED, event)
        runner = StageRunner(stage_settings, name="router-test", source_topic=topics.SEGMENTED,
                             group_id=unique("router"), transform=flaky)
        runner.loop._retry_pause = 0.1
        await runner.start()
        try:
            found = await read_topic(stage_settings.kafka_bootstrap_servers,
                                     "dept.public_sector", until=1,
                                     keep=lambda e: e.ticket_id == event.ticket_id)
        finally:
            await runner.stop()
        assert len(found) == 1
        assert calls["n"] >= 2


class TestShutdown:
    async def test_stop_commits_what_was_processed(
            self, stage_settings: Settings, raw_producer: AIOKafkaProducer) -> None:
        group = unique("router")
        for _ in range(20):
            await publish(raw_producer, topics.SEGMENTED, segmented_event("government"))
        runner = router_runner(stage_settings, group)
        await runner.start()
        async with asyncio.timeout(30):
            while True:
                await asyncio.sleep(0.2)
                if await _lag(stage_settings.kafka_bootstrap_servers, group) == 0:
                    break
        await runner.stop()
        assert await _lag(stage_settings.kafka_bootstrap_servers, group) == 0


async def _lag(bootstrap: str, group: str) -> int:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    probe = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await probe.start()
    try:
        committed = await admin.list_consumer_group_offsets(group)
        partitions = [TopicPartition(topics.SEGMENTED, p)
                      for p in range(Settings().kafka_topic_partitions)]
        ends = await probe.end_offsets(partitions)
        return sum(end - (committed[tp].offset if tp in committed else 0)
                   for tp, end in ends.items())
    finally:
        await probe.stop()
        await admin.close()


class TestSegmenterStage:
    async def test_customers_are_segmented_from_the_store(
            self, stage_settings: Settings, raw_producer: AIOKafkaProducer) -> None:
        await migrate.upgrade(stage_settings.database_url)
        engine = db.engine(stage_settings.database_url)
        async with engine.begin() as connection:
            await connection.execute(CustomerRow.__table__.insert(), [
                {"customer_id": "gov-1", "customer_type": "government", "attributes": {}},
                {"customer_id": "ind-1", "customer_type": "individual", "attributes": {},
                 "signup_date": date(2020, 1, 1)}])
            await connection.execute(PurchaseRow.__table__.insert(), [
                {"customer_id": "ind-1", "amount": 20, "currency": "EUR",
                 "purchased_at": datetime.now(UTC)}])
        store = CustomerStore(db.sessions(engine),
                              cache=CustomerCache(max_customers=100, ttl_seconds=60))
        await store.refresh_features(["gov-1", "ind-1"], now=datetime.now(UTC))
        rule_set = rules_file.load(Path("config/segments.yaml"))
        expected = {"gov-1": ("government", "public-sector", True),
                    "ind-1": ("general", "default", True),
                    "stranger": ("potential", "prospects", False)}
        sent: dict[str, str] = {}
        for customer_id in expected:
            ticket_id = unique("t")
            await publish_received(raw_producer, ticket_id, customer_id)
            sent[ticket_id] = customer_id
        runner = segmenter_runner(stage_settings, store, rule_set)
        await runner.start()
        try:
            found = await read_topic(stage_settings.kafka_bootstrap_servers, topics.SEGMENTED,
                                     until=3, keep=lambda e: e.ticket_id in sent)
        finally:
            await runner.stop()
            await engine.dispose()
        got: dict[str, Any] = {
            sent[e.ticket_id]: (e.data["segmentation"]["segment"],
                                e.data["segmentation"]["rule"],
                                e.data["segmentation"]["customer_known"]) for e, _ in found}
        assert got == expected
        assert all(e.data["segmentation"]["rules_version"] == rule_set.version
                   for e, _ in found)


async def publish_to(producer: AIOKafkaProducer, event: envelope.Event,
                     partition: int | None = None) -> None:
    """Publish a segmented ticket keyed by its id (spread over the partitions)."""
    await producer.send_and_wait(topics.SEGMENTED, envelope.to_value(event),
                                 key=str(event.ticket_id).encode(), partition=partition,
                                 headers=envelope.to_headers(event))


async def owns(runner: StageRunner, *partitions: TopicPartition) -> None:
    """Wait until the runner has a transactional producer for one of the partitions."""
    producers = runner.loop.producers
    assert producers is not None
    async with asyncio.timeout(30):
        while all(producers.get(tp) is None for tp in partitions):  # noqa: ASYNC110 - polling
            await asyncio.sleep(0.1)


async def routed_once(stage_settings: Settings, sent: set[str]
                      ) -> list[tuple[envelope.Event, object]]:
    """What reached public_sector's lane of the tickets sent (every copy)."""
    return await read_topic(stage_settings.kafka_bootstrap_servers, "dept.public_sector",
                            until=len(sent), within=60, settle=3.0,
                            keep=lambda e: e.ticket_id in sent)


def assert_each_once(found: list[tuple[envelope.Event, object]], sent: set[str]) -> None:
    copies = Counter(event.ticket_id for event, _ in found)
    assert set(copies) == sent
    assert max(copies.values()) == 1


class TestHandover:
    async def test_instances_joining_and_leaving_route_each_ticket_once(
            self, stage_settings: Settings, raw_producer: AIOKafkaProducer) -> None:
        group = unique("router")
        sent: set[str | None] = set()

        async def publish_some(count: int) -> None:
            for _ in range(count):
                event = segmented_event("government")
                sent.add(event.ticket_id)
                await publish_to(raw_producer, event)

        first = router_runner(stage_settings, group)
        second = router_runner(stage_settings.model_copy(update={"instance_id": "1"}), group)
        await publish_some(40)
        await first.start()
        try:
            await publish_some(40)
            await second.start()
            await publish_some(40)
            # Which partitions the second gets depends on the member ids' order.
            await owns(second, *(TopicPartition(topics.SEGMENTED, p) for p in range(3)))
            await first.stop()
            await publish_some(40)
            found = await routed_once(stage_settings, sent)
        finally:
            await first.stop()
            await second.stop()
        assert_each_once(found, sent)

    async def test_a_fenced_partition_waits_for_the_rebalance_and_the_stage_runs_on(
            self, stage_settings: Settings, raw_producer: AIOKafkaProducer) -> None:
        group = unique("router")
        first = router_runner(stage_settings, group)
        second = router_runner(stage_settings.model_copy(update={"instance_id": "1"}), group)
        fenced_partition = TopicPartition(topics.SEGMENTED, 0)
        await first.start()
        await owns(first, fenced_partition)
        assert first.loop.producers is not None
        # What a new owner does on taking the partition over: fence the old owner.
        usurper = kafka.producer(stage_settings, client_id="usurper",
                                 transactional_id=first.loop.producers.transactional_id(
                                     fenced_partition))
        await usurper.start()
        try:
            held_back, flowing = segmented_event("government"), segmented_event("government")
            await publish_to(raw_producer, held_back, partition=0)
            await publish_to(raw_producer, flowing, partition=1)
            # The other partitions flow meanwhile. (Whether the fenced one waits until
            # the rebalance below is the broker's timing: a session timeout on a loaded
            # machine rebalances the group earlier, which is as good.)
            delivered = await read_topic(stage_settings.kafka_bootstrap_servers,
                                         "dept.public_sector", until=1, within=30,
                                         keep=lambda e: e.ticket_id == flowing.ticket_id)
            assert [event.ticket_id for event, _ in delivered] == [flowing.ticket_id]
            assert first.running
            await second.start()  # the rebalance gives partition 0 a fresh producer
            found = await read_topic(stage_settings.kafka_bootstrap_servers,
                                     "dept.public_sector", until=1, within=60, settle=3.0,
                                     keep=lambda e: e.ticket_id == held_back.ticket_id)
            assert len(found) == 1
            assert first.running
        finally:
            await usurper.stop()
            await first.stop()
            await second.stop()

    async def test_slow_producer_starts_give_each_partition_one_producer_per_instance(
            self, stage_settings: Settings, raw_producer: AIOKafkaProducer,
            monkeypatch: pytest.MonkeyPatch) -> None:
        # Starting a producer as slowly as over SASL_SSL (TLS and SCRAM handshakes), while
        # a second instance joins: no instance ever holds two live producers of one
        # transactional id (they would fence each other), and every one is stopped.
        live: Counter[tuple[str, str]] = Counter()
        most_live: Counter[tuple[str, str]] = Counter()
        build = kafka.producer

        def slow_producer(settings: Settings, *, client_id: str,
                          transactional_id: str | None = None) -> AIOKafkaProducer:
            producer = build(settings, client_id=client_id, transactional_id=transactional_id)
            key = (settings.instance_id, str(transactional_id))
            start, stop = producer.start, producer.stop

            async def slow_start() -> None:
                await asyncio.sleep(2.0)
                await start()
                live[key] += 1
                most_live[key] = max(most_live[key], live[key])

            async def counted_stop() -> None:
                if producer._closed is False and producer._sender.sender_task is not None:
                    live[key] -= 1
                await stop()

            producer.start, producer.stop = slow_start, counted_stop
            return producer

        monkeypatch.setattr(kafka, "producer", slow_producer)
        group = unique("router")
        sent: set[str | None] = set()
        for _ in range(30):
            event = segmented_event("government")
            sent.add(event.ticket_id)
            await publish_to(raw_producer, event)
        first = router_runner(stage_settings, group)
        second = router_runner(stage_settings.model_copy(update={"instance_id": "1"}), group)
        await first.start()
        try:
            await asyncio.sleep(1.0)  # the first instance's producers are starting
            await second.start()
            found = await routed_once(stage_settings, sent)
        finally:
            await first.stop()
            await second.stop()
        assert_each_once(found, sent)
        assert most_live and max(most_live.values()) == 1
        assert not +live  # every started producer was stopped


class TestStuckTransaction:
    async def test_a_commit_that_never_returns_is_abandoned_and_the_tickets_go_once(
            self, stage_settings: Settings, raw_producer: AIOKafkaProducer,
            monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
        # As when the broker dies mid-commit and aiokafka waits for it for good.
        stuck: list[str] = []
        build = kafka.producer

        def sometimes_stuck(settings: Settings, *, client_id: str,
                            transactional_id: str | None = None) -> AIOKafkaProducer:
            producer = build(settings, client_id=client_id, transactional_id=transactional_id)
            commit = producer.commit_transaction

            async def first_commit_hangs() -> None:
                if not stuck:
                    stuck.append(str(transactional_id))
                    await asyncio.Event().wait()
                await commit()

            producer.commit_transaction = first_commit_hangs  # type: ignore[method-assign]
            return producer

        monkeypatch.setattr(kafka, "producer", sometimes_stuck)
        sent = set()
        for _ in range(10):
            event = segmented_event("government")
            sent.add(event.ticket_id)
            await publish_to(raw_producer, event)
        runner = router_runner(stage_settings, unique("router"))
        runner.loop.transaction_timeout_seconds = 2.0
        await runner.start()
        try:
            found = await routed_once(stage_settings, sent)
        finally:
            await runner.stop()
        copies = Counter(event.ticket_id for event, _ in found)
        assert stuck, "no commit was held up: the test tested nothing"
        assert set(copies) == sent
        assert max(copies.values()) == 1
        assert "did not finish" in caplog.text


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


class TestRuleFailingAtRunTime:
    async def test_the_ticket_goes_to_the_dlq_and_the_next_one_flows(
            self, stage_settings: Settings, raw_producer: AIOKafkaProducer) -> None:
        await migrate.upgrade(stage_settings.database_url)
        engine = db.engine(stage_settings.database_url)
        async with engine.begin() as connection:
            await connection.execute(CustomerRow.__table__.insert(), [
                {"customer_id": "odd-1", "customer_type": "individual",
                 "attributes": {"level": "high"}},
                {"customer_id": "fine-1", "customer_type": "individual",
                 "attributes": {"level": 5}}])
        store = CustomerStore(db.sessions(engine),
                              cache=CustomerCache(max_customers=100, ttl_seconds=60))
        rule_set = rules_file.parse(
            "default_segment: general\nrules:\n  - name: levels\n    segment: high_level\n"
            "    when: has(customer.attributes.level) && customer.attributes.level > 3\n",
            source="levels.yaml")
        marker = unique("odd")
        sent = {}
        for customer_id in ("odd-1", "fine-1"):
            sent[customer_id] = f"{marker}-{customer_id}"
            await publish_received(raw_producer, sent[customer_id], customer_id)
        runner = segmenter_runner(stage_settings, store, rule_set)
        await runner.start()
        try:
            segmented = await read_topic(stage_settings.kafka_bootstrap_servers,
                                         topics.SEGMENTED, until=1,
                                         keep=lambda e: e.ticket_id == sent["fine-1"])
            dead = await read_topic(stage_settings.kafka_bootstrap_servers,
                                    topics.DEAD_LETTERS, until=1,
                                    keep=lambda e: e.ticket_id == sent["odd-1"])
        finally:
            await runner.stop()
            await engine.dispose()
        assert segmented[0][0].data["segmentation"]["segment"] == "high_level"
        headers = {k: v.decode() for k, v in dead[0][1].headers}  # type: ignore[attr-defined]
        assert headers["dlq_error_class"] == "RuleEvaluationError"
        assert "'levels' failed" in headers["dlq_error"]
