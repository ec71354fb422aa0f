"""Wiring the callbacks into a service (the router, which owns the platforms'
credentials): the outbox writer on `tickets.events`, and the delivery workers, once per
fleet. And registering an endpoint, as the admin API and the command line do it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.core import access, admin_actions, background, credentials, leases, topics
from services.core.settings import Settings
from services.core.stage import StageRunner
from services.webhooks import catalog, delivery, endpoint_store, outbox, outbox_store


@dataclass
class Callbacks:
    endpoints: endpoint_store.Endpoints
    deliveries: outbox_store.Deliveries
    recorder: StageRunner
    deliverer: delivery.Deliverer

    async def start(self, tasks: background.BackgroundTasks, fleet: leases.Leases,
                    settings: Settings) -> None:
        tasks.start("webhook-delivery", lambda stop: leases.every_while_holding(
            fleet, delivery.LEASE, settings.webhook_poll_seconds,
            self.deliverer.deliver_due, stop, on_lost=self.deliverer.stand_down))
        await self.recorder.start()

    async def stop(self) -> None:
        """Stop consuming (the batch in hand is written and committed)."""
        await self.recorder.stop()

    async def close(self) -> None:
        """After the delivery job stopped: end the workers (a callback cut short is
        sent again by the next instance, at least once)."""
        await self.deliverer.close()


@dataclass(frozen=True)
class NoCredential:
    """An endpoint not registered: its platform was never issued a credential."""

    problem: str


async def register(endpoints: endpoint_store.Endpoints, known: credentials.Credentials,
                   platform: str, url: str, *, enabled: bool = True,
                   actor: str = admin_actions.COMMAND_LINE
                   ) -> tuple[endpoint_store.Endpoint, str] | NoCredential | None:
    """Register a platform's endpoint (its secret shown this once), for a platform a
    credential was issued to (`catalog.platform_problem`); None if it has one."""
    issued = {credential.subject for credential in
              await known.listed(role=access.Role.PLATFORM) if credential.subject}
    problem = catalog.platform_problem(platform, issued)
    if problem:
        return NoCredential(problem)
    return await endpoints.register(platform, url, enabled=enabled, actor=actor)


def endpoints_of(settings: Settings, sessions: async_sessionmaker[AsyncSession]
                 ) -> endpoint_store.Endpoints:
    return endpoint_store.Endpoints(
        sessions, secret_overlap=timedelta(seconds=settings.webhook_secret_overlap_seconds))


def retry_policy(settings: Settings) -> catalog.RetryPolicy:
    return catalog.RetryPolicy(max_attempts=settings.webhook_max_attempts,
                               base_seconds=settings.webhook_retry_base_seconds,
                               max_seconds=settings.webhook_retry_max_seconds)


def build(settings: Settings, sessions: async_sessionmaker[AsyncSession], *,
          platforms_of: outbox.PlatformsOf,
          awaits_store: Callable[[str], bool] = lambda _ticket_id: False,
          source_topic: str = topics.EVENTS,
          group: str = topics.ROUTER_WEBHOOKS_GROUP,
          on_ended: Callable[[str], None] | None = None) -> Callbacks:
    """`on_ended`: told when the outbox writer (a stage) ends for good (StageRunner)."""
    endpoints, deliveries = endpoints_of(settings, sessions), outbox_store.Deliveries(sessions)
    recorder = StageRunner(
        settings, name=group, source_topic=source_topic, group_id=group,
        publishes=False, follower=True, on_ended=on_ended,
        transform=outbox.RecordCallbacks(deliveries, endpoints, platforms_of=platforms_of,
                                         awaits_store=awaits_store))
    deliverer = delivery.Deliverer(
        deliveries, endpoints, retry=retry_policy(settings),
        timeout_seconds=settings.webhook_timeout_seconds,
        concurrency=settings.webhook_concurrency_per_platform)
    return Callbacks(endpoints, deliveries, recorder, deliverer)
