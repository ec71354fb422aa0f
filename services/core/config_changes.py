"""Announcing a configuration version put in force on `config.changes`, and following the
announcements, so that every instance converges on it within moments.

An announcement only says "look at the store": each instance reads the version in force
from the SQL store, never from the record. Announcing is best effort: a broker that does
not take it (down, or no ACL for the topic) is logged, and the others find the version
by their periodic check of the store (`live_config.CHECK_SECONDS`). A record that is no
announcement (unreadable, another kind of event, naming no configuration) is logged,
counted and passed over: no nudge, the periodic check still runs."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiokafka import ConsumerRecord
from aiokafka.errors import KafkaError
from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.core import (
    background,
    config_store,
    envelope,
    faults,
    kafka,
    live_config,
    topics,
)
from services.core.settings import Settings

logger = logging.getLogger(__name__)

VERSION_IN_FORCE = "config.version_in_force"
SOURCE = "/services/config"
# After the topic could not be read, how long before trying again (the store is checked
# meanwhile).
RETRY_SECONDS = 30.0

UNANNOUNCED = Counter("routing_config_announcements_failed_total",
                      "Configuration versions put in force whose announcement the broker"
                      " did not take (the others find them by checking the store)",
                      ["config"])
PASSED_OVER = Counter("routing_config_announcements_passed_over_total",
                      "Records on config.changes an instance's follower of a configuration"
                      " could not read as an announcement, and passed over",
                      ["config", "fault"])


class NotAnAnnouncement(faults.Unprocessable):
    """A readable event on config.changes that announces no configuration version."""


def export_passed_over(config: str) -> None:
    """Each fault a passed-over record can have, at 0, from the follower's start: a series
    born at its first record passed over, at 1, is no increase to Prometheus."""
    for fault in faults.Fault:
        PASSED_OVER.labels(config, fault.value)


def announced_kind(record: ConsumerRecord) -> str:
    """The configuration an announcement names (its key and its data's `kind`), or the
    EnvelopeError or NotAnAnnouncement saying why the record is none."""
    if isinstance(record, faults.UnreadableRecord):
        raise faults.Unreadable(record.problem)
    event = envelope.from_record(record.headers, record.value)
    if event.type != VERSION_IN_FORCE:
        raise NotAnAnnouncement(f"not a {VERSION_IN_FORCE} event")
    kind = event.data.get("kind")
    if not isinstance(kind, str) or record.key != kind.encode():
        raise NotAnAnnouncement("its data's `kind` (a string) is not the configuration"
                                " its key names")
    return kind


def announcement(version: config_store.ConfigVersion) -> kafka.Output:
    return kafka.Output(topics.CONFIG_CHANGES, version.kind, envelope.Event(
        type=VERSION_IN_FORCE, source=SOURCE, ticket_id=None, subject=version.kind,
        correlation_id=str(version.version_id),
        data={"kind": version.kind, "version_id": version.version_id,
              "version": version.version, "sha256": version.sha256}))


class Announcer:
    def __init__(self, publisher: kafka.Publisher) -> None:
        self._publisher = publisher

    async def __call__(self, version: config_store.ConfigVersion) -> None:
        try:
            await self._publisher.publish([announcement(version)])
        except kafka.PublishFailed as exc:
            UNANNOUNCED.labels(version.kind).inc()
            logger.warning("configuration version not announced; the others find it in"
                           " the store", extra={"config": version.kind,
                                                "version_id": version.version_id,
                                                "error": str(exc)})


async def follow(settings: Settings, live: live_config.LiveConfig[live_config.Config],
                 stop: asyncio.Event, *, client_id: str) -> None:
    """Catch up with the store whenever a version of `live`'s kind is announced. Reads
    from the end (no group): what was put in force before is read from the store."""
    export_passed_over(live.name)
    while not stop.is_set():
        consumer = kafka.consumer(settings, topics.CONFIG_CHANGES, group_id=None,
                                  client_id=client_id, offset_reset="latest")
        try:
            await consumer.start()
            try:
                # Positioned at the end first, then caught up with the store: a version
                # put in force in between is not missed.
                await kafka.positioned(consumer)
                await live.sync()
                while not stop.is_set():
                    batch = await faults.fetch_past_unreadable(consumer, timeout_ms=500)
                    kinds = {_kind_or_passed_over(record, live.name)
                             for records in batch.values() for record in records}
                    if live.name in kinds:
                        await live.sync()
            finally:
                await consumer.stop()
        except KafkaError as exc:
            logger.warning("configuration announcements cannot be read; following the"
                           " store alone", extra={"config": live.name,
                                                  "error": type(exc).__name__})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), RETRY_SECONDS)


def _kind_or_passed_over(record: ConsumerRecord, config: str) -> str | None:
    """The configuration `record` announces; None for one passed over, logged (where it
    is and what is wrong, never its values) and counted."""
    try:
        return announced_kind(record)
    except (envelope.EnvelopeError, NotAnAnnouncement) as error:
        fault = faults.classify(error).value
        PASSED_OVER.labels(config, fault).inc()
        logger.warning("configuration announcement passed over", extra={
            "config": config, "fault": fault, "error": faults.reason(error),
            "topic": record.topic, "partition": record.partition, "offset": record.offset})
        return None


async def govern(live: live_config.LiveConfig[live_config.Config], settings: Settings,
                 sessions: async_sessionmaker[AsyncSession],
                 tasks: background.BackgroundTasks, *, publisher: kafka.Publisher,
                 client_id: str) -> None:
    """Wire a service's configuration to the store: load (or seed) the version in force
    now, announce what it puts in force with `publisher`, and follow the others'
    announcements and the store in the background."""
    await live.govern(config_store.ConfigVersions(sessions, live.name),
                      announce=Announcer(publisher))
    tasks.start(f"{live.name}-announcements",
                lambda stop: follow(settings, live, stop, client_id=client_id))
    tasks.start(f"{live.name}-store-check", live.follow_store)
