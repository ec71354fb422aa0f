"""A receiver asking the sender to slow down (a 429, a 503 with Retry-After) holds its whole
endpoint for the wait asked, for every worker of the fleet: real HTTP receivers on
loopback, the outbox on SQLite and PostgreSQL (no broker), the deliverer's clock moved on
by the test."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta

import pytest

from services.webhooks import catalog, delivery, models
from tests.conftest import unique
from tests.integration.webhook_outbox import Outbox, outbox_on, sample
from tests.webhooks_receiver import Receiver

# A first retry after 30 to 60 s, none after more than an hour.
MINUTE_THEN_HOUR = catalog.RetryPolicy(max_attempts=3, base_seconds=60, max_seconds=3600)
HOLD_SAID = "webhook endpoint held: its receiver asked to wait"


@pytest.fixture
async def one_at_a_time(database_url: str) -> AsyncIterator[Outbox]:
    """One callback in flight a platform: which one is answered first is known."""
    async with outbox_on(database_url, timeout_seconds=5, concurrency=1,
                         retry=MINUTE_THEN_HOUR) as opened:
        yield opened


@pytest.fixture
async def two_at_a_time(database_url: str) -> AsyncIterator[Outbox]:
    async with outbox_on(database_url, timeout_seconds=120, concurrency=2,
                         retry=MINUTE_THEN_HOUR) as opened:
        yield opened


def said(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records
            if r.name == delivery.__name__ and r.getMessage() == HOLD_SAID]


class TestAReceiverAskingToWait:
    @pytest.mark.parametrize(("status", "retry_after", "held"), [
        (429, "600", 600), (503, "600", 600),
        (429, None, 60)])  # a 429 without Retry-After: the backoff's first step
    async def test_holds_its_endpoint_then_gets_every_callback(
            self, one_at_a_time: Outbox, webhook_receiver: Callable[..., Receiver],
            caplog: pytest.LogCaptureFixture, database_url: str, status: int,
            retry_after: str | None, held: int) -> None:
        caplog.set_level(logging.WARNING, logger=delivery.__name__)
        outbox = one_at_a_time
        receiver = webhook_receiver(
            status=status, headers={} if retry_after is None else {"Retry-After": retry_after})
        platform = unique("desk")
        await outbox.register(platform, f"{receiver.url}?token=sekrit")
        await outbox.enqueue(platform, *(f"msg_{n}" for n in range(5)))
        before = await outbox.of(platform)
        await outbox.drained()

        # The first answered asks to wait: none of the others is sent, nor spends an
        # attempt or its time; the one answered records its failed attempt.
        assert receiver.attempts == 1
        after = await outbox.of(platform)
        assert (after["msg_0"].attempts, after["msg_0"].last_error) == (1, f"HTTP {status}")
        assert {key: (d.status, d.attempts, d.next_attempt_at, d.last_error)
                for key, d in after.items() if key != "msg_0"} == {
            key: (models.PENDING, 0, d.next_attempt_at, None)
            for key, d in before.items() if key != "msg_0"}
        endpoint = await outbox.endpoints.get(platform)
        assert endpoint is not None and endpoint.held_until is not None
        warned = said(caplog)
        assert len(warned) == 1 and warned[0].levelno == logging.WARNING
        assert (vars(warned[0])["platform"], vars(warned[0])["status"],
                vars(warned[0])["wait_seconds"]) == (platform, status, held)
        assert vars(warned[0])["receiver"] == f"http://127.0.0.1:{receiver.port}"
        assert not any(word in str(vars(r)) for r in warned for word in ("sekrit", "/hooks"))

        # Half the wait later, on this instance and on another (a restart, or the next
        # holder of the lease): nothing sent, and nothing counted overdue.
        receiver.status, receiver.headers = 204, {}
        outbox.clock.ahead = timedelta(seconds=held / 2)
        await outbox.drained()
        left = sample("routing_webhook_endpoint_held_seconds", platform=platform)
        assert left is not None and 0 < left <= held / 2
        assert sample("routing_webhook_oldest_due_seconds", platform=platform) == 0
        async with outbox_on(database_url, timeout_seconds=5,
                             retry=MINUTE_THEN_HOUR) as another:
            another.clock.ahead = outbox.clock.ahead
            await another.drained()
            assert another.deliverer.working == [] and receiver.attempts == 1

        # Once the wait is over: every callback goes, the hold ended by itself.
        outbox.clock.ahead = timedelta(seconds=held + 1)
        await outbox.drained()
        assert {d.status for d in (await outbox.of(platform)).values()} == {models.DELIVERED}
        assert sorted(r.headers["webhook-id"] for r in receiver.received) == [
            f"msg_{n}" for n in range(5)]
        assert sample("routing_webhook_endpoint_held_seconds", platform=platform) == 0
        assert len(said(caplog)) == 1

    async def test_those_in_flight_finish_and_the_hold_is_said_once(
            self, two_at_a_time: Outbox, webhook_receiver: Callable[..., Receiver],
            caplog: pytest.LogCaptureFixture) -> None:
        caplog.set_level(logging.WARNING, logger=delivery.__name__)
        outbox = two_at_a_time
        receiver = webhook_receiver(status=429, headers={"Retry-After": "600"})
        receiver.hold()
        platform = unique("desk")
        await outbox.register(platform, receiver.url)
        await outbox.enqueue(platform, "msg_1", "msg_2", "msg_3", "msg_4")
        await outbox.deliverer.deliver_due()
        await receiver.wait_for(2, what=lambda r: r.attempts)  # two in flight at once
        receiver.release()
        await outbox.drained()
        attempts = await outbox.of(platform)
        assert sorted((d.attempts, d.last_error) for d in attempts.values()) == [
            (0, None), (0, None), (1, "HTTP 429"), (1, "HTTP 429")]
        assert receiver.attempts == 2 and len(said(caplog)) == 1

    async def test_a_503_without_retry_after_fails_that_callback_alone(
            self, one_at_a_time: Outbox, webhook_receiver: Callable[..., Receiver]) -> None:
        receiver, platform = webhook_receiver(status=503), unique("desk")
        await one_at_a_time.register(platform, receiver.url)
        await one_at_a_time.enqueue(platform, "msg_1", "msg_2", "msg_3")
        await one_at_a_time.drained()
        assert receiver.attempts == 3
        assert {(d.attempts, d.last_error) for d in (await one_at_a_time.of(platform)).values()
                } == {(1, "HTTP 503")}
        endpoint = await one_at_a_time.endpoints.get(platform)
        assert endpoint is not None and endpoint.held_until is None
        assert sample("routing_webhook_endpoint_held_seconds", platform=platform) == 0

    async def test_an_endpoint_whose_url_changed_meanwhile_is_not_held(
            self, two_at_a_time: Outbox, webhook_receiver: Callable[..., Receiver]) -> None:
        """The 429 came from the URL before: the one in force did not ask to wait."""
        new = webhook_receiver()
        platform = await two_at_a_time.moved_in_flight(
            webhook_receiver(status=429, headers={"Retry-After": "600"}), new.url)
        await two_at_a_time.drained()
        endpoint = await two_at_a_time.endpoints.get(platform)
        assert endpoint is not None and endpoint.held_until is None
        two_at_a_time.clock.ahead = timedelta(seconds=601)  # its own wait, not a hold's
        await two_at_a_time.drained()
        assert [r.headers["webhook-id"] for r in new.received] == ["msg_1"]


class TestOverdueAfterAHold:
    async def test_a_held_endpoints_callbacks_come_due_when_its_hold_ends(
            self, one_at_a_time: Outbox) -> None:
        """Not overdue while held (they wait as asked), and counted from the hold's end
        after it, not from their own time."""
        platform, url = unique("desk"), "https://desk.example.com/hooks"
        await one_at_a_time.register(platform, url)
        await one_at_a_time.enqueue(platform, "msg_1")
        now = datetime.now(UTC)
        until = now + timedelta(minutes=10)
        assert await one_at_a_time.endpoints.hold(platform, url=url, until=until, now=now)
        deliveries = one_at_a_time.deliveries
        assert platform not in await deliveries.due_since(now + timedelta(minutes=5))
        assert (await deliveries.due_since(now + timedelta(minutes=15)))[platform] == until
