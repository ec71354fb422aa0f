"""`routing recompute-tiers` against a real store and broker: it recomputes by the tier
settings and publishes the tier changes, so a running segmenter refreshes its cutoffs.
(Before the service layer it built a store with the default tier policy and published
nothing, so running segmenters kept stale cutoffs.)"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from devtools import demo
from services.core import db, kafka, topics
from services.core.settings import Settings
from services.segmenter import bootstrap, customer_events
from services.segmenter.profiles import NO_FEATURES, Customer, Tier
from services.segmenter.store import CustomerStore
from tests.conftest import read_topic, unique

ROOT = Path(__file__).resolve().parents[2]
MOST_VALUABLE_SHARE = 0.5  # ten times the default: the cutoffs must move


@pytest.fixture
async def tier_settings(kafka_bootstrap: str, sqlite_url: str) -> Settings:
    await demo.seed_if_empty(sqlite_url, count=200)  # tiers by the default policy
    settings = Settings(kafka_bootstrap_servers=kafka_bootstrap, database_url=sqlite_url,
                        most_valuable_share=MOST_VALUABLE_SHARE, customer_cache_size=100)
    await kafka.ensure_topics(settings, [topics.CUSTOMER_EVENTS])
    return settings


@pytest.fixture
async def running_store(tier_settings: Settings) -> AsyncIterator[CustomerStore]:
    """A running segmenter's store, kept fresh by its cache follower."""
    engine = db.engine(tier_settings.database_url)
    store = bootstrap.customer_store(tier_settings, db.sessions(engine))
    await store.load_cutoffs()
    stop = asyncio.Event()
    follower = asyncio.create_task(
        customer_events.CacheFollower(tier_settings, store).run(stop))
    publisher = kafka.Publisher(tier_settings, client_id=unique("probe"))
    try:
        await following(store, publisher)
        yield store
    finally:
        stop.set()
        await follower
        await publisher.close()
        await engine.dispose()


async def following(store: CustomerStore, publisher: kafka.Publisher) -> None:
    """Until the follower (which starts at the end of the topic) acts on a probe's
    change event: from then on it sees every event."""
    probe = unique("probe")
    store.cache.put(Customer(probe, None, NO_FEATURES, Tier.POTENTIAL))
    for _ in range(60):
        await customer_events.publish_changes(publisher, [probe])
        for _ in range(10):
            if not store.cache.holds(probe):
                return
            await asyncio.sleep(0.05)
    raise AssertionError("the cache follower never acted on a change event")


async def recompute_tiers_command(settings: Settings) -> str:
    env = {**os.environ, "DATABASE_URL": settings.database_url,
           "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
           "MOST_VALUABLE_SHARE": str(MOST_VALUABLE_SHARE), "LOG_FORMAT": "text"}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "from services.cli import app; app()", "recompute-tiers",
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, err.decode()
    return out.decode()


class TestRecomputeTiersCommand:
    async def test_it_follows_the_tier_settings_and_running_segmenters_get_the_cutoffs(
            self, tier_settings: Settings, running_store: CustomerStore) -> None:
        before = running_store.cutoffs
        started = datetime.now(UTC)
        output = await recompute_tiers_command(tier_settings)
        changed = int(output.split("tier changes: ")[1].split(";")[0])
        assert changed > 0, output
        kinds = {customer_events.TIER_CHANGED, customer_events.POPULATION_RECOMPUTED}
        published = [event.type for event, _record in await read_topic(
            tier_settings.kafka_bootstrap_servers, topics.CUSTOMER_EVENTS,
            until=changed + 1, within=60,
            keep=lambda event: event.type in kinds and event.time >= started)]
        # Published: every tier change, and the announcement of the new cutoffs.
        assert published.count(customer_events.TIER_CHANGED) == changed
        assert published.count(customer_events.POPULATION_RECOMPUTED) == 1
        # By the settings' share: about half the buyers are now most valuable.
        sizes = await running_store.tier_sizes()
        buyers = sum(sizes.values()) - sizes.get("potential", 0)
        assert sizes["most_valuable"] >= 0.4 * buyers, sizes
        # The running segmenter took the new cutoffs from the announcement.
        stored = bootstrap.customer_store(tier_settings, running_store.sessions)
        latest = await stored.load_cutoffs()
        assert latest != before
        for _ in range(200):
            if running_store.cutoffs == latest:
                break
            await asyncio.sleep(0.05)
        assert running_store.cutoffs == latest
