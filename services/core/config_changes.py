"""Announcing a configuration version put in force on `config.changes`, and following the
announcements, so that every instance converges on it within moments.

An announcement only says "look at the store": each instance reads the version in force
from the SQL store, never from the record. Announcing is best effort: a broker that does
not take it (down, or no ACL for the topic) is logged, and the others find the version
by their periodic check of the store (`live_config.CHECK_SECONDS`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging

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
    while not stop.is_set():
        consumer = kafka.consumer(settings, topics.CONFIG_CHANGES, group_id=None,
                                  client_id=client_id, offset_reset="latest")
        try:
            await consumer.start()
            try:
                # Positioned at the end first, then caught up with the store: a version
                # put in force in between is not missed.
                for partition in consumer.assignment():
                    await consumer.position(partition)
                await live.sync()
                while not stop.is_set():
                    batch = await faults.fetch_past_unreadable(consumer, timeout_ms=500)
                    keys = {record.key for records in batch.values() for record in records}
                    if live.name.encode() in keys:
                        await live.sync()
            finally:
                await consumer.stop()
        except KafkaError as exc:
            logger.warning("configuration announcements cannot be read; following the"
                           " store alone", extra={"config": live.name,
                                                  "error": type(exc).__name__})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), RETRY_SECONDS)


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
