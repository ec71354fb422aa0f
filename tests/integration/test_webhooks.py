"""Callbacks to the platforms against the real broker, the real SQL store and real HTTP
receivers: lifecycle events on a topic, the outbox writer consuming it, the delivery
workers calling receivers that verify signatures with the standardwebhooks library;
receivers that are down, slow, or answer 500."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jsonschema_rs
import pytest
import standardwebhooks
from prometheus_client import REGISTRY

from services.core import background, db, events, kafka, leases, migrate, topics
from services.core.settings import Settings
from services.router import app as router_app
from services.router import intake
from services.router.store import Dispatch, RoutedTickets
from services.webhooks import catalog, delivery, endpoint_store, models, outbox_store, service
from tests import credentials
from tests.conftest import unique
from tests.router_apis import RouterApis, routed_ticket, router_apis
from tests.webhooks_receiver import Receiver

Type = events.TicketEventType
DEADLINE = datetime(2026, 11, 30, 17, 0, tzinfo=UTC)


class Harness:
    """The callbacks of a router, on a topic of their own."""

    def __init__(self, settings: Settings, topic: str) -> None:
        self.settings, self.topic = settings, topic
        self.engine = db.engine(settings.database_url)
        sessions = db.sessions(self.engine)
        self.routed = RoutedTickets(sessions)
        self.callbacks = service.build(settings, sessions, group=unique("router-webhooks"),
                                       platforms_of=self.routed.platforms_of,
                                       source_topic=topic)
        self.tasks = background.BackgroundTasks()
        self.fleet = leases.Leases(sessions, holder=unique("router"))
        self.publisher = kafka.Publisher(settings, client_id="webhook-tests")

    async def register(self, platform: str, receiver: Receiver) -> str:
        registered = await self.callbacks.endpoints.register(platform, receiver.url)
        assert registered is not None
        return registered[1]

    async def route(self, platform: str, ticket_id: str | None = None, *,
                    at: datetime | None = None, key: str | None = None,
                    written_at: datetime | None = None,
                    correlation_id: str | None = None) -> list[str]:
        """A ticket of `platform` routed (the router's state written first, as the router
        does) at `at` (default now), then responded and resolved, its events keyed by
        `key` (default the ticket's id), published under `correlation_id` (default the
        ticket's id) and written to Kafka now or, as an outbox that was behind would
        find them, with the timestamp `written_at`: returns the events' ids."""
        ticket_id = ticket_id or unique("t")
        now = at or datetime.now(UTC)
        await self.routed.record_first_dispatches([Dispatch(
            ticket_id=ticket_id, department="government", segment="government", priority=2,
            deadline=DEADLINE, steps=[], payload={}, at=now, platform=platform)])
        routed = events.TicketEvent(
            ticket_id=ticket_id, type=Type.ROUTED, occurred_at=now, received_at=now,
            department="government", segment="government", reason="route", priority=2,
            first_response_deadline=DEADLINE, platform=platform)
        later = [events.TicketEvent(ticket_id=ticket_id, type=kind,
                                    occurred_at=now + timedelta(minutes=minutes))
                 for kind, minutes in ((Type.RESPONDED, 5), (Type.RESOLVED, 9))]
        received = events.TicketEvent(ticket_id=ticket_id, type=Type.RECEIVED,
                                      occurred_at=now, platform=platform)
        outputs = [kafka.Output(self.topic, key or ticket_id,
                                events.as_envelope(item, correlation_id or ticket_id,
                                                   events.WRITTEN_BY[item.type]))
                   for item in (received, routed, *later)]
        if written_at is None:
            await self.publisher.publish(outputs)
        else:
            producer = kafka.producer(self.settings, client_id="webhook-tests-behind")
            await producer.start()
            try:
                for record in kafka.records(outputs):
                    await producer.send_and_wait(
                        record.topic, record.value, key=record.key, headers=record.headers,
                        timestamp_ms=int(written_at.timestamp() * 1000))
            finally:
                await producer.stop()
        return [output.event.id for output in outputs[1:]]

    async def waiting(self, status: str) -> list[outbox_store.Delivery]:
        return await self.callbacks.deliveries.listed(status)

    async def held_back(self, platform: str, count: int) -> list[outbox_store.Delivery]:
        """The platform's pending callbacks once the outbox holds `count` (bounded)."""
        for _ in range(600):
            pending = [d for d in await self.waiting(models.PENDING) if d.platform == platform]
            if len(pending) == count:
                break
            await asyncio.sleep(0.05)
        return pending


QUICK = {"webhook_poll_seconds": 0.1, "webhook_retry_base_seconds": 0.2,
         "webhook_retry_max_seconds": 0.5, "webhook_max_attempts": 4,
         "webhook_timeout_seconds": 60.0}


@pytest.fixture
async def harness(settings: Settings, request: pytest.FixtureRequest
                  ) -> AsyncIterator[Harness]:
    """Callbacks with quick retries; a test's `pytest.mark.webhook_settings(...)` changes
    more."""
    marker = request.node.get_closest_marker("webhook_settings")
    async with running_harness(settings.model_copy(update={
            **QUICK, **(marker.kwargs if marker else {})}), unique("events")) as running:
        yield running


@dataclass
class WithTheIntake:
    harness: Harness  # the callbacks of tickets.events
    apis: RouterApis  # the router's intake, publishing there


@pytest.fixture
async def with_the_intake(settings: Settings, tmp_path: Path) -> AsyncIterator[WithTheIntake]:
    """The callbacks of the events the router's intake publishes on tickets.events."""
    async with running_harness(settings.model_copy(update=QUICK),
                               topics.EVENTS) as harness, router_apis(
            settings.database_url, settings.kafka_bootstrap_servers, tmp_path,
            intake.api) as apis:
        yield WithTheIntake(harness, apis)


@asynccontextmanager
async def running_harness(settings: Settings, topic: str) -> AsyncIterator[Harness]:
    await kafka.ensure_topics(settings, [topic])
    await migrate.upgrade(settings.database_url)
    running = Harness(settings, topic)
    await running.callbacks.start(running.tasks, running.fleet, settings)
    try:
        yield running
    finally:
        await running.callbacks.stop()
        await running.tasks.stop()
        await running.callbacks.close()
        await running.publisher.close()
        await running.engine.dispose()


def counted(platform: str, outcome: str) -> float:
    return REGISTRY.get_sample_value("routing_webhook_deliveries_total",
                                     {"platform": platform, "outcome": outcome}) or 0.0


class TestDelivered:
    async def test_callbacks_arrive_signed_with_the_routing_and_no_personal_data(
            self, harness: Harness, webhook_receiver: Callable[..., Receiver]) -> None:
        receiver, platform = webhook_receiver(), unique("desk")
        secret = await harness.register(platform, receiver)
        unregistered = unique("other-desk")
        await harness.route(unregistered)  # a platform without an endpoint: not called
        ids = await harness.route(platform)

        await receiver.wait_for(3)
        payloads = receiver.verified(secret)  # raises on a bad signature
        by_type = {payload["type"]: payload for payload in payloads}
        assert set(by_type) == {"ticket.routed", "ticket.responded", "ticket.resolved"}
        routed = by_type["ticket.routed"]["data"]
        assert (routed["department"], routed["segment"], routed["priority"]) == (
            "government", "government", 2)
        assert datetime.fromisoformat(routed["first_response_deadline"]) == DEADLINE
        # Only what a lifecycle event holds (ids, department, times...), not the platform,
        # and the ticket's correlation id.
        allowed = set(events.TicketEvent.model_fields) - {"platform", "type"}
        assert all(set(payload["data"]) <= allowed | {"correlation_id"}
                   for payload in payloads)
        assert {item.headers["webhook-id"] for item in receiver.received} == {
            catalog.delivery_id(event_id) for event_id in ids}
        await receiver.wait_for(3, what=lambda _r: int(counted(platform, "delivered")))
        assert not await harness.waiting(models.PENDING)

    async def test_every_callback_carries_the_tickets_correlation_id(
            self, harness: Harness, webhook_receiver: Callable[..., Receiver]) -> None:
        """The X-Correlation-ID a ticket was posted with (its events' ce_correlationid)
        is in each callback's signed body, as `data.correlation_id`."""
        receiver, platform, correlation_id = webhook_receiver(), unique("desk"), unique("c")
        secret = await harness.register(platform, receiver)
        await harness.route(platform, correlation_id=correlation_id)
        await receiver.wait_for(3)
        payloads = receiver.verified(secret)
        assert {payload["type"]: payload["data"]["correlation_id"] for payload in payloads} == {
            "ticket.routed": correlation_id, "ticket.responded": correlation_id,
            "ticket.resolved": correlation_id}

    async def test_a_report_posted_without_a_correlation_id_carries_the_tickets(
            self, with_the_intake: WithTheIntake,
            webhook_receiver: Callable[..., Receiver]) -> None:
        """A department's reports through the intake (POST /v1/tickets/{id}/events, with
        no X-Correlation-ID, as the `department` tool sends them) go out under the id the
        ticket was posted with, and so do their callbacks."""
        harness, apis = with_the_intake.harness, with_the_intake.apis
        receiver, platform = webhook_receiver(), unique("desk")
        secret = await harness.register(platform, receiver)
        ticket_id, _at = await routed_ticket(apis.routed, "customer_care",
                                             spent=timedelta(minutes=1), platform=platform,
                                             correlation_id="corr-from-platform")
        department = await credentials.headers_of(apis.credentials, "department",
                                                  "customer_care")
        for kind in ("picked_up", "responded", "resolved"):
            answer = await apis.client.post(f"/v1/tickets/{ticket_id}/events",
                                            json={"type": kind}, headers=department)
            assert answer.status_code == 202, answer.text
        await receiver.wait_for(3)
        assert {payload["type"]: payload["data"]["correlation_id"]
                for payload in receiver.verified(secret)} == {
            "ticket.picked_up": "corr-from-platform", "ticket.responded": "corr-from-platform",
            "ticket.resolved": "corr-from-platform"}

    async def test_each_callback_is_one_the_openapi_document_describes(
            self, harness: Harness, webhook_receiver: Callable[..., Receiver]) -> None:
        """Receivers' typed clients read the router's OpenAPI `webhooks`: each callback
        received is listed there, carries the headers it names and validates against
        the body schema it gives for that type, and for no other type."""
        receiver, platform = webhook_receiver(), unique("desk")
        await harness.register(platform, receiver)
        await harness.route(platform, correlation_id=unique("c"))
        await receiver.wait_for(3)
        document = router_app.create_app(harness.settings).openapi()
        for item in receiver.received:
            body = json.loads(item.body)
            documented = document["webhooks"][body["type"]]["post"]
            assert {p["name"] for p in documented["parameters"]} <= set(item.headers)
            schema = documented["requestBody"]["content"]["application/json"]["schema"]
            validator = jsonschema_rs.validator_for(
                {**schema, "components": document["components"]})
            validator.validate(body)  # raises, saying where, if it does not
            others = set(document["webhooks"]) - {body["type"]}
            assert not any(jsonschema_rs.validator_for({
                **document["webhooks"][other]["post"]["requestBody"]["content"][
                    "application/json"]["schema"], "components": document["components"]}
            ).is_valid(body) for other in others)

    async def test_events_written_before_the_platform_registered_are_not_its_callbacks(
            self, harness: Harness, webhook_receiver: Callable[..., Receiver]) -> None:
        """An outbox behind (or replaying) when a platform registers reads events written
        before: they are not sent. Events written since are, even when they say they
        happened before (a report's own `occurred_at`). The tickets' events share a key,
        so the outbox reads them in this order."""
        receiver, platform, key = webhook_receiver(), unique("desk"), unique("key")
        an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
        await harness.register(platform, receiver)
        before = await harness.route(platform, at=an_hour_ago, key=key,
                                     written_at=an_hour_ago)
        backdated = await harness.route(platform, at=an_hour_ago, key=key)
        await receiver.wait_for(3, what=lambda _r: int(counted(platform, "delivered")))
        listed = {d.delivery_id for status in (models.PENDING, models.DELIVERED, models.DEAD)
                  for d in await harness.waiting(status) if d.platform == platform}
        assert listed == {catalog.delivery_id(event_id) for event_id in backdated}
        assert not listed & {catalog.delivery_id(event_id) for event_id in before}
        assert len(receiver.received) == 3

    async def test_a_replayed_batch_writes_nothing_twice(
            self, harness: Harness, webhook_receiver: Callable[..., Receiver]) -> None:
        receiver, platform = webhook_receiver(), unique("desk")
        await harness.register(platform, receiver)
        await harness.route(platform)
        await receiver.wait_for(3)
        await receiver.wait_for(3, what=lambda _r: int(counted(platform, "delivered")))
        sent = receiver.received[0]
        # The outbox writer meets the same event again (its batch replayed after a crash).
        await harness.callbacks.deliveries.enqueue([outbox_store.Outgoing(
            sent.headers["webhook-id"], platform, "ticket.routed", "t", sent.body.decode())])
        assert not await harness.waiting(models.PENDING)
        delivered = await harness.waiting(models.DELIVERED)
        assert [d.delivery_id for d in delivered if d.platform == platform].count(
            sent.headers["webhook-id"]) == 1


class TestDisabled:
    async def test_a_disabled_endpoints_callbacks_wait_until_it_is_enabled(
            self, harness: Harness, webhook_receiver: Callable[..., Receiver]) -> None:
        receiver, platform = webhook_receiver(), unique("desk")
        secret = await harness.register(platform, receiver)
        await harness.callbacks.endpoints.update(platform, enabled=False)
        await harness.route(platform)
        waiting = await harness.held_back(platform, 3)
        assert len(waiting) == 3 and receiver.attempts == 0
        await harness.callbacks.endpoints.update(platform, enabled=True)
        await receiver.wait_for(3)
        assert len(receiver.verified(secret)) == 3

    async def test_a_poll_starts_no_worker_for_a_disabled_endpoint(
            self, harness: Harness, webhook_receiver: Callable[..., Receiver],
            monkeypatch: pytest.MonkeyPatch) -> None:
        """Its callbacks wait: a poll starts no worker for them and makes no client (each
        one loaded the trust store: about 15 ms of the loop the intake shares, a poll),
        even when a worker is started before the endpoint is disabled."""
        receiver, platform = webhook_receiver(), unique("desk")
        await harness.register(platform, receiver)
        await harness.callbacks.endpoints.update(platform, enabled=False)
        await harness.route(platform)
        assert len(await harness.held_back(platform, 3)) == 3
        deliverer = harness.callbacks.deliverer
        made: list[object] = []

        class Counted(httpx.AsyncClient):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                made.append(self)
                super().__init__(*args, **kwargs)

        monkeypatch.setattr(delivery.httpx, "AsyncClient", Counted)
        for _ in range(3):
            await deliverer.deliver_due()
        assert platform not in await harness.callbacks.deliveries.due_platforms(
            datetime.now(UTC))
        assert platform not in deliverer._workers
        await deliverer._drain(platform)  # a worker the poll before the change started
        assert made == [] and receiver.attempts == 0


class TestSecretRotation:
    @staticmethod
    async def rotated(harness: Harness, receiver: Receiver) -> tuple[str, str, str]:
        """A new platform's endpoint `receiver` registered, then its secret rotated: the
        platform, the secret registered and the one the rotation gave."""
        platform = unique("desk")
        old = await harness.register(platform, receiver)
        new = await harness.callbacks.endpoints.rotate_secret(platform)
        assert isinstance(new, str)
        return platform, old, new

    @staticmethod
    async def delivered(harness: Harness, platform: str, receiver: Receiver) -> None:
        """A ticket of `platform` routed, responded and resolved: its three callbacks."""
        await harness.route(platform)
        await receiver.wait_for(3)

    async def test_the_old_secret_signs_too_for_the_overlap(
            self, harness: Harness, webhook_receiver: Callable[..., Receiver]) -> None:
        receiver = webhook_receiver()
        platform, old, new = await self.rotated(harness, receiver)
        await self.delivered(harness, platform, receiver)
        assert receiver.verified(old) == receiver.verified(new)  # either key verifies

    async def test_a_rotation_refused_in_the_overlap_leaves_both_signing(
            self, harness: Harness, webhook_receiver: Callable[..., Receiver]) -> None:
        """The hostile case: two rotations seconds apart left the first secret, which
        receivers were still on, signing no more. The second is refused; both sign."""
        receiver = webhook_receiver()
        platform, old, new = await self.rotated(harness, receiver)
        again = await harness.callbacks.endpoints.rotate_secret(platform)
        assert isinstance(again, endpoint_store.StillSigning)
        await self.delivered(harness, platform, receiver)
        assert receiver.verified(old) == receiver.verified(new)

    @pytest.mark.webhook_settings(webhook_secret_overlap_seconds=0)
    async def test_without_overlap_only_the_new_secret_signs(
            self, harness: Harness, webhook_receiver: Callable[..., Receiver]) -> None:
        receiver = webhook_receiver()
        platform, old, new = await self.rotated(harness, receiver)
        await self.delivered(harness, platform, receiver)
        assert len(receiver.verified(new)) == 3
        with pytest.raises(standardwebhooks.WebhookVerificationError):
            receiver.verified(old)


class TestReceiverDown:
    async def test_callbacks_are_retried_until_it_is_up(
            self, harness: Harness, webhook_receiver: Callable[..., Receiver]) -> None:
        receiver, platform = webhook_receiver(start=False), unique("desk")
        secret = await harness.register(platform, receiver)
        await harness.route(platform)
        await receiver.wait_for(3, what=lambda _r: int(counted(platform, "failed")))
        receiver.start()
        await receiver.wait_for(3)
        assert len(receiver.verified(secret)) == 3
        assert not await harness.waiting(models.DEAD)


class TestSlowReceiver:
    async def test_other_platforms_are_not_held_up(
            self, harness: Harness, webhook_receiver: Callable[..., Receiver]) -> None:
        slow, slow_platform = webhook_receiver(), unique("slow-desk")
        fast, fast_platform = webhook_receiver(), unique("fast-desk")
        slow.hold()
        await harness.register(slow_platform, slow)
        fast_secret = await harness.register(fast_platform, fast)
        await harness.route(slow_platform)
        await slow.wait_for(1, what=lambda receiver: receiver.attempts)  # held in flight
        await harness.route(fast_platform)
        await fast.wait_for(3)
        assert len(fast.verified(fast_secret)) == 3
        assert slow.received == []  # still holding its answers
        slow.release()
        await slow.wait_for(3)


def waiting_figure(platform: str) -> float | None:
    return REGISTRY.get_sample_value("routing_webhook_deliveries_waiting",
                                     {"platform": platform, "status": models.PENDING})


class TestLeaseHandover:
    async def test_a_router_that_loses_the_delivery_lease_stops_sending(
            self, harness: Harness, webhook_receiver: Callable[..., Receiver]) -> None:
        """Two routers must not call one platform at once: the one whose renewal came
        too late stops its workers (the callbacks they had in flight stay pending, for
        the holder to send) and leaves the outbox's figures to the holder."""
        receiver, platform = webhook_receiver(), unique("desk")
        receiver.hold()
        await harness.register(platform, receiver)
        await harness.route(platform)
        await receiver.wait_for(1, what=lambda r: r.attempts)  # in flight, held there
        deliverer = harness.callbacks.deliverer
        assert deliverer.working == [platform]
        await receiver.wait_for(3, what=lambda _r: int(waiting_figure(platform) or 0))

        successor = leases.Leases(db.sessions(harness.engine), holder=unique("router"))
        assert await successor.acquire(delivery.LEASE, duration=timedelta(hours=1),
                                       now=datetime.now(UTC) + timedelta(minutes=1))
        await receiver.wait_for(1, what=lambda _r: int(not deliverer.working))
        assert waiting_figure(platform) is None
        pending = [d for d in await harness.waiting(models.PENDING) if d.platform == platform]
        assert (len(pending), {d.attempts for d in pending}) == (3, {0})
        receiver.release()


class TestLimits:
    @pytest.mark.webhook_settings(webhook_timeout_seconds=0.5)
    async def test_an_answer_slower_than_the_timeout_is_a_failed_attempt(
            self, harness: Harness, webhook_receiver: Callable[..., Receiver]) -> None:
        receiver, platform = webhook_receiver(), unique("desk")
        receiver.hold()
        await harness.register(platform, receiver)
        await harness.route(platform)
        await receiver.wait_for(1, what=lambda _r: int(counted(platform, "failed")))
        pending = await harness.waiting(models.PENDING)
        assert any(d.last_error and "Timeout" in d.last_error for d in pending)
        receiver.release()
        await receiver.wait_for(3)

    @pytest.mark.webhook_settings(webhook_concurrency_per_platform=2)
    async def test_a_platform_gets_at_most_its_concurrency_at_once(
            self, harness: Harness, webhook_receiver: Callable[..., Receiver]) -> None:
        receiver, platform = webhook_receiver(), unique("desk")
        receiver.hold()
        await harness.register(platform, receiver)
        await harness.route(platform)  # three callbacks, due together
        await receiver.wait_for(2, what=lambda r: r.attempts)
        receiver.release()
        await receiver.wait_for(3)
        assert receiver.max_in_flight == 2


class TestFailingReceiver:
    async def test_retried_then_dead_lettered_then_replayed(
            self, harness: Harness, webhook_receiver: Callable[..., Receiver]) -> None:
        receiver, platform = webhook_receiver(status=500), unique("desk")
        secret, correlation_id = await harness.register(platform, receiver), unique("c")
        await harness.route(platform, correlation_id=correlation_id)
        await receiver.wait_for(3, what=lambda _r: int(counted(platform, "dead_lettered")))
        dead = await harness.waiting(models.DEAD)
        assert {d.platform for d in dead} == {platform} and len(dead) == 3
        assert all(d.attempts == 4 and d.last_error == "HTTP 500" for d in dead)
        assert receiver.attempts == 12  # 4 attempts each
        assert counted(platform, "failed") == 12

        receiver.status = 204
        first = dead[0].delivery_id
        assert await harness.callbacks.deliveries.replay(delivery_id=first) == 1
        await receiver.wait_for(1)
        assert await harness.callbacks.deliveries.replay(platform=platform) == 2
        await receiver.wait_for(3)
        # Replayed as stored: signed anew, the same body, its correlation id kept, and
        # the webhook-id its attempts carried (receivers drop what they already had).
        assert [payload["data"]["correlation_id"] for payload in receiver.verified(secret)
                ] == [correlation_id] * 3
        assert sorted(item.headers["webhook-id"] for item in receiver.received) == sorted(
            d.delivery_id for d in dead)
        assert not await harness.waiting(models.DEAD)
