"""The topics the services follow besides the ticket stages (no group, from the end):
`config.changes`, whose announcements every instance follows to load a configuration
version from the store, and `customers.events`, whose changes every segmenter follows to
drop its cached customers. A record either cannot read (not JSON, JSON of the wrong
shape, an unknown schema version or configuration, no key, no headers, a huge value, one
the Kafka client cannot read at all) is passed over: the records after it are still
applied and the follower still runs; each one is logged and counted. Each test has its
own topic, patched in for the real one, so its poison reaches no other test's follower."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import shutil
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from prometheus_client import REGISTRY
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.core import (
    config_changes,
    config_store,
    db,
    envelope,
    faults,
    kafka,
    migrate,
    service_context,
    topics,
)
from services.core.live_config import LiveConfig
from services.core.settings import PROJECT_ROOT, Settings
from services.segmenter import app as segmenter_app
from services.segmenter import bootstrap, customer_events, live_rules, rules
from services.segmenter.profiles import NO_FEATURES, Customer, Tier
from services.segmenter.store import CustomerStore
from tests import waits
from tests.conftest import unique
from tests.unreadable_records import write_unreadable

Headers = list[tuple[str, bytes]]
Sessions = async_sessionmaker[AsyncSession]
# A personal detail in a poison record's value: none of it may reach the logs.
PERSONAL = "Jane Poison-Doe"
HUGE = 900_000  # bytes: under the broker's and the client's 1 MiB limits


def event_headers(kind: str, subject: str, **replaced: bytes) -> Headers:
    event = envelope.Event(type=kind, source="/tests/poison", ticket_id=None,
                           subject=subject, correlation_id=subject, data={})
    headers = dict(envelope.to_headers(event))
    headers.update(replaced)
    return list(headers.items())


def poison(kind: str, subject: str, key: bytes) -> list[tuple[bytes | None, bytes | None,
                                                              Headers]]:
    """Records (key, value, headers) that look like `kind` events but none can be read."""
    headers = event_headers(kind, subject)
    return [
        (key, b'{"name": "' + PERSONAL.encode() + b'", "broken', headers),  # not JSON
        (key, b'["' + PERSONAL.encode() + b'"]', headers),  # JSON, not an object
        (key, b"{}", event_headers(kind, subject, ce_schemaversion=b"99")),  # unknown
        (key, b"{}", event_headers(kind, subject, ce_specversion=b"0.3")),
        (key, b"{}", event_headers(kind, subject, ce_time=PERSONAL.encode())),
        (key, b"{}", []),  # no headers at all
        (key, None, headers),  # no value
        (None, b"{}", headers),  # no key
        (key, b"x" * HUGE, headers),  # huge, and no JSON
    ]


async def write_poison(settings: Settings, producer: AIOKafkaProducer, topic: str,
                       records: list[tuple[bytes | None, bytes | None, Headers]]) -> None:
    for key, value, headers in records:
        await producer.send_and_wait(topic, value, key=key, headers=headers)
    for partition in sorted(await producer.partitions_for(topic)):
        await write_unreadable(settings.kafka_bootstrap_servers, topic, partition=partition)


# A wait for what a follower does: up to 60 s, looking every 0.1 s.
until_followed = functools.partial(waits.until, within=60, every=0.1)


def while_following(condition: Callable[[], bool], running: asyncio.Task[None]
                    ) -> Callable[[], bool]:
    """`condition`, failing the wait for it if the follower ended meanwhile."""
    def held() -> bool:
        if condition():
            return True
        assert not running.done(), f"the follower ended: {running}"
        return False
    return held


def announcements_passed_over(config: str) -> float:
    return REGISTRY.get_sample_value("routing_config_announcements_passed_over_total",
                                     {"config": config, "fault": "record"}) or 0.0


def passed_over() -> float:
    return REGISTRY.get_sample_value("routing_customer_events_passed_over_total",
                                     {"fault": "record"}) or 0.0


def logged(caplog: pytest.LogCaptureFixture) -> str:
    """What the services logged, their messages and every field (the JSON logs' too)."""
    return "\n".join(f"{record.getMessage()} {vars(record)}" for record in caplog.records
                     if record.name.startswith("services."))


async def published(settings: Settings, changed: str) -> None:
    """`changed`'s change published, as the segmenter publishes it."""
    publisher = kafka.Publisher(settings, client_id="changes-after-start")
    try:
        await customer_events.publish_changes(publisher, [changed])
    finally:
        await publisher.close()


@contextlib.asynccontextmanager
async def following(job: Callable[[asyncio.Event], Awaitable[None]]
                    ) -> AsyncIterator[asyncio.Task[None]]:
    stop = asyncio.Event()
    task = asyncio.create_task(job(stop))
    try:
        yield task
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 30)


@pytest.fixture
async def producer(kafka_bootstrap: str) -> AsyncIterator[AIOKafkaProducer]:
    client = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, max_request_size=2**20)
    await client.start()
    yield client
    await client.stop()


@pytest.fixture
async def sessions(sqlite_url: str) -> AsyncIterator[Sessions]:
    await migrate.upgrade(sqlite_url)
    engine = db.engine(sqlite_url)
    yield db.sessions(engine)
    await engine.dispose()


@pytest.fixture
async def own_topic(settings: Settings, monkeypatch: pytest.MonkeyPatch
                    ) -> Callable[[str], Awaitable[str]]:
    async def patched(name: str) -> str:
        topic = unique(name.replace(".", "-"))
        await kafka.ensure_topics(settings, [topic])
        monkeypatch.setattr(topics, name, topic)
        return topic
    return patched


class TestConfigAnnouncements:
    async def test_a_poison_announcement_is_passed_over_and_the_next_followed(
            self, settings: Settings, producer: AIOKafkaProducer, sessions: Sessions,
            own_topic: Callable[[str], Awaitable[str]], tmp_path: Path,
            monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
        topic = await own_topic("CONFIG_CHANGES")
        file = tmp_path / "segments.yaml"
        shutil.copyfile(PROJECT_ROOT / "config" / "segments.yaml", file)
        original = file.read_text(encoding="utf-8")
        versions = config_store.ConfigVersions(sessions, config_store.SEGMENT_RULES)
        publisher = kafka.Publisher(settings, client_id="poison-config")
        announce = config_changes.Announcer(publisher)
        putting: LiveConfig[rules.RuleSet] = live_rules.live_rule_set(file)
        await putting.govern(versions, announce=announce)
        following_instance = live_rules.live_rule_set(file)
        await following_instance.govern(versions, announce=announce)
        syncs: list[bool] = []
        sync = following_instance.sync

        async def counted() -> bool:
            changed = await sync()
            syncs.append(changed)
            return changed
        monkeypatch.setattr(following_instance, "sync", counted)

        async def put(label: str) -> str:
            version, _ = await putting.put_in_force(
                original.replace("version: demo-2", f"version: {label}"),
                source="upload", author="poison test")
            return version.version

        caplog.set_level(logging.DEBUG, logger="services")
        # The counter is process-wide: what earlier tests passed over is cleared first, so
        # that its series are this follower's start's own.
        config_changes.PASSED_OVER.clear()
        try:
            async with following(lambda stop: config_changes.follow(
                    settings, following_instance, stop, client_id="poison-config")) as task:
                # at the end, caught up
                await until_followed(while_following(lambda: bool(syncs), task))
                name = following_instance.name
                # Each fault at 0 from the start: a series born at 1 is no increase.
                assert {fault.value: REGISTRY.get_sample_value(
                    "routing_config_announcements_passed_over_total",
                    {"config": name, "fault": fault.value}) for fault in faults.Fault} \
                    == {fault.value: 0.0 for fault in faults.Fault}
                data = {"kind": name, "version_id": 10**9, "version": "no-such", "sha256": ""}
                unknown = envelope.to_value(envelope.Event(
                    type=config_changes.VERSION_IN_FORCE, source="/tests", ticket_id=None,
                    data=data, correlation_id="x"))
                bad = [*poison(config_changes.VERSION_IN_FORCE, name, name.encode()),
                       (b"no_such_config", unknown, []),  # no headers, a kind nobody follows
                       (name.encode(), unknown, event_headers("other.event", name)),
                       (b"other_config", unknown, event_headers(  # the key not its kind
                           config_changes.VERSION_IN_FORCE, name))]
                await write_poison(settings, producer, topic, [
                    *bad, (name.encode(), unknown, event_headers(
                        config_changes.VERSION_IN_FORCE, name))])  # no such version: read
                # Each one and the record the client cannot read, on each partition.
                unreadable = len(await producer.partitions_for(topic))
                await until_followed(while_following(
                    lambda: announcements_passed_over(name) == len(bad) + unreadable, task))
                for label in ("after-poison", "after-that"):
                    version = await put(label)
                    await until_followed(while_following(
                        lambda v=version: following_instance.current.version == v, task))
                assert not task.done()
        finally:
            await publisher.close()
        passed = [record for record in caplog.records
                  if record.getMessage() == "configuration announcement passed over"]
        assert len(passed) == len(bad) + unreadable
        assert {(record.topic, record.fault) for record in passed} == {  # type: ignore[attr-defined]
            (topic, "record")}
        assert all(record.offset >= 0 for record in passed)  # type: ignore[attr-defined]
        assert {record.error for record in passed} >= {  # type: ignore[attr-defined]
            "its data's `kind` (a string) is not the configuration its key names",
            "missing CloudEvents headers: ce_id, ce_type, ce_source",
            f"not a {config_changes.VERSION_IN_FORCE} event"}
        assert PERSONAL not in logged(caplog)


class TestCustomerEvents:
    async def test_the_segmenter_s_start_ends_with_its_follower_positioned(
            self, settings: Settings, sessions: Sessions, monkeypatch: pytest.MonkeyPatch,
            own_topic: Callable[[str], Awaitable[str]]) -> None:
        """README "On call": the segmenter's lifespan positions its cache follower
        before its stage starts (it was positioned in its background task, after the
        start had ended): a change written as soon as the start has ended (the event
        loop held while it is written, as below) drops its customer's cached copy."""
        await own_topic("CUSTOMER_EVENTS")
        await own_topic("INCOMING")  # the stage's: no other test's tickets
        monkeypatch.setattr(topics, "SEGMENTER_GROUP", unique("segmenter-group"))
        app = segmenter_app.create_app(settings)
        lifespan = app.router.lifespan_context(app)
        await lifespan.__aenter__()
        try:
            store = service_context.of(app).part(bootstrap.Segmenter).customers
            assert isinstance(store, CustomerStore)
            changed = unique("changed")
            store.cache.put(Customer(changed, None, NO_FEATURES, Tier.POTENTIAL))
            writer = threading.Thread(target=asyncio.run, args=(published(settings, changed),))
            writer.start()
            writer.join()  # holds the event loop until the change is written
            # Before the mend: its follower, positioned after this, never read it.
            await until_followed(lambda: not store.cache.holds(changed))
        finally:
            await lifespan.__aexit__(None, None, None)

    async def test_a_poison_customer_event_is_passed_over_and_the_next_applied(
            self, settings: Settings, producer: AIOKafkaProducer, sessions: Sessions,
            own_topic: Callable[[str], Awaitable[str]],
            caplog: pytest.LogCaptureFixture) -> None:
        topic = await own_topic("CUSTOMER_EVENTS")
        store = bootstrap.customer_store(settings, sessions)

        def cached(customer_id: str) -> str:
            store.cache.put(Customer(customer_id, None, NO_FEATURES, Tier.POTENTIAL))
            return customer_id

        publisher = kafka.Publisher(settings, client_id="poison-customers")
        before = passed_over()
        caplog.set_level(logging.DEBUG, logger="services")
        try:
            follower = customer_events.CacheFollower(settings, store)
            async with following(follower.run) as task:
                # Reading from the end: until a change is applied, it may not be there yet.
                probe = cached(unique("probe"))
                async with asyncio.timeout(60):
                    while store.cache.holds(probe):
                        await customer_events.publish_changes(publisher, [probe])
                        await asyncio.sleep(0.5)
                spared = cached(unique("spared"))  # named by no record
                after = cached(unique("after"))
                # Poison naming a customer not cached: reading one never forgets `after`.
                poisoned = unique("poisoned")
                await write_poison(settings, producer, topic, poison(
                    customer_events.CHANGED, poisoned, poisoned.encode()))
                await customer_events.publish_changes(publisher, [after])
                await until_followed(while_following(lambda: not store.cache.holds(after), task))
                last = cached(unique("last"))
                await customer_events.publish_changes(publisher, [last])
                await until_followed(while_following(lambda: not store.cache.holds(last), task))
                # Every poison record but the one without a key (an event, of a customer
                # not cached), and the one the Kafka client cannot read on each partition.
                expected = len(poison("k", "s", b"k")) - 1 + len(
                    await producer.partitions_for(topic))
                await until_followed(while_following(
                    lambda: passed_over() - before >= expected, task))
                assert store.cache.holds(spared)
                assert not task.done()
        finally:
            await publisher.close()
        assert passed_over() - before == expected
        assert "customer event passed over" in logged(caplog)
        assert PERSONAL not in logged(caplog)
