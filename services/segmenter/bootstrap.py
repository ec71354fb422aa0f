"""The segmenter's bootstrap: settings in, a typed context out.

`connect` opens the real adapters (the customer store with the settings' cache and tier
policy, a Kafka publisher, the rule set in force) and `wire` puts them in a `Segmenter`,
the one thing the edges reach: the FastAPI app (provided in its service context,
services/core/service_context.py, reached through one dependency in
services/segmenter/api.py), the periodic tier job and the `routing` command.
Unit tests call `wire` with recording fakes: the same door, no sockets.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.core import db, kafka, store_start
from services.core.settings import Settings
from services.segmenter import customer_events, features, live_rules, proxies, service
from services.segmenter.cache import CustomerCache
from services.segmenter.live_rules import LiveRuleSet
from services.segmenter.store import CustomerStore


@dataclass(frozen=True)
class Segmenter:
    """What the segmenter's use cases are called with."""

    settings: Settings
    rules: LiveRuleSet
    customers: service.Customers
    publisher: service.Publisher


def wire(settings: Settings, *, customers: service.Customers, publisher: service.Publisher,
         rules: LiveRuleSet | None = None) -> Segmenter:
    """The context, from adapters real or fake; the rule set defaults to the settings'
    rule file (read at once; a file that cannot be used stops the start with file, line
    and rule only when the store holds no version yet: LiveConfig.govern). The cache
    follower's passed-over records are counted from 0 on."""
    customer_events.export_passed_over()
    return Segmenter(
        settings=settings,
        rules=rules if rules is not None else live_rules.live_rule_set(
            settings.segment_rules_file),
        customers=customers, publisher=publisher)


def proxy_policy(settings: Settings) -> proxies.Policy:
    """When a rule's matches stand in for a protected attribute (rule analysis)."""
    return proxies.Policy(threshold=settings.proxy_association_threshold,
                          minimum_customers=settings.protected_group_minimum_size)


def tier_policy(settings: Settings) -> features.TierPolicy:
    return features.TierPolicy(most_valuable_share=settings.most_valuable_share,
                               most_growable_share=settings.most_growable_share,
                               min_growth_ratio=settings.min_growth_ratio)


def customer_store(settings: Settings,
                   sessions: async_sessionmaker[AsyncSession]) -> CustomerStore:
    """The one way a customer store is built: the settings' cache and tier policy."""
    return CustomerStore(
        sessions,
        cache=CustomerCache(max_customers=settings.customer_cache_size,
                            ttl_seconds=settings.customer_cache_ttl_seconds),
        policy=tier_policy(settings))


@dataclass(frozen=True)
class Connected:
    """The context and the real adapters behind it, for the service's own lifespan
    (the stage, the cache follower and config governance need the concrete ones)."""

    segmenter: Segmenter
    store: CustomerStore
    sessions: async_sessionmaker[AsyncSession]
    publisher: kafka.Publisher


@asynccontextmanager
async def connect(settings: Settings, *, client_id: str) -> AsyncIterator[Connected]:
    """Open the real adapters (migrating the store first); closed on the way out."""
    rules = live_rules.live_rule_set(settings.segment_rules_file)
    await store_start.migrated(settings.database_url)
    engine = db.store_engine(settings)
    publisher = kafka.Publisher(settings, client_id=client_id)
    try:
        sessions = db.sessions(engine)
        store = customer_store(settings, sessions)
        await store.load_cutoffs()
        yield Connected(wire(settings, customers=store, publisher=publisher, rules=rules),
                        store, sessions, publisher)
    finally:
        await publisher.close()
        await engine.dispose()
