"""One delivery worker's attempts against real HTTP receivers on loopback and a real SQLite
outbox (no broker: callbacks are written to the outbox here): receivers that drip their
answer, answer at length, endpoints and callbacks the sender cannot send, a callback
dead-lettered and its log line, the store failing under a worker, the figures that show
a platform stalled, and HTTPS receivers looked up on each platform's own thread."""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import socket
import ssl
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import trustme
from sqlalchemy import text

from services.core import admin_actions, db
from services.webhooks import catalog, delivery, lookups, models
from tests.conftest import unique
from tests.integration.webhook_outbox import Outbox, outbox_on, sample
from tests.webhooks_receiver import Receiver


@pytest.fixture
async def outbox(sqlite_url: str) -> AsyncIterator[Outbox]:
    """A half-second deadline per attempt."""
    async with outbox_on(sqlite_url, timeout_seconds=0.5) as opened:
        yield opened


@pytest.fixture
async def patient_outbox(sqlite_url: str) -> AsyncIterator[Outbox]:
    """A deadline no test reaches: a receiver held holds its attempt until released."""
    async with outbox_on(sqlite_url, timeout_seconds=120) as opened:
        yield opened


class TestTheWholeAttemptIsBounded:
    async def test_an_answer_dripping_a_byte_at_a_time_is_cut_at_the_timeout(
            self, outbox: Outbox, webhook_receiver: Callable[..., Receiver]) -> None:
        receiver = webhook_receiver(status=200, answer_bytes=10_000, drip_seconds=0.1)
        _, sent = await outbox.sent(receiver.url, "msg_drip")
        attempt = sent["msg_drip"]
        assert (attempt.status, attempt.attempts) == (models.PENDING, 1)
        assert attempt.last_error is not None and attempt.last_error.startswith("TimeoutError")

    async def test_a_long_answer_is_not_read_and_its_status_delivers(
            self, outbox: Outbox, webhook_receiver: Callable[..., Receiver]) -> None:
        receiver = webhook_receiver(status=200, answer_bytes=64 * 2**20)
        _, sent = await outbox.sent(receiver.url, "msg_long")
        attempt = sent["msg_long"]
        assert (attempt.status, attempt.attempts) == (models.DELIVERED, 1)
        await receiver.wait_for(1, what=lambda r: r.cut)  # the sender stopped reading


class TestOneTlsContext:
    async def test_every_platforms_client_shares_the_one_loaded_at_start(
            self, outbox: Outbox, webhook_receiver: Callable[..., Receiver],
            monkeypatch: pytest.MonkeyPatch) -> None:
        """Loading the trust store is about 15 ms of the loop's time: once, not for each
        worker a poll starts."""
        verified_with: list[object] = []

        class Recorded(httpx.AsyncClient):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                verified_with.append(kwargs.get("verify"))
                super().__init__(*args, **kwargs)

        class RecordedTransport(lookups.LookingUpOwn):
            def __init__(self, tls: ssl.SSLContext, *args: Any, **kwargs: Any) -> None:
                verified_with.append(tls)
                super().__init__(tls, *args, **kwargs)

        monkeypatch.setattr(delivery.httpx, "AsyncClient", Recorded)
        monkeypatch.setattr(delivery.lookups, "LookingUpOwn", RecordedTransport)
        for n in range(2):
            receiver, platform = webhook_receiver(), unique("desk")
            await outbox.register(platform, receiver.url)
            for poll in range(2):  # a worker of each poll
                await outbox.enqueue(platform, f"msg_{n}_{poll}")
                await outbox.drained()
            assert receiver.attempts == 2
        assert len(verified_with) == 8  # each client's, and its transport's
        assert all(isinstance(context, ssl.SSLContext) and context is verified_with[0]
                   for context in verified_with)


class TestWhatTheSenderCannotSend:
    async def test_a_webhook_id_it_cannot_encode_fails_that_callback_alone(
            self, outbox: Outbox, webhook_receiver: Callable[..., Receiver]) -> None:
        receiver = webhook_receiver()
        platform, attempts = await outbox.sent(receiver.url, "msg_a", "msg_é", "msg_b", "msg_c")
        assert {key: (d.status, d.attempts) for key, d in attempts.items()} == {
            "msg_a": (models.DELIVERED, 1), "msg_b": (models.DELIVERED, 1),
            "msg_c": (models.DELIVERED, 1), "msg_é": (models.PENDING, 1)}
        assert attempts["msg_é"].last_error == "UnicodeEncodeError"
        assert sorted(r.headers["webhook-id"] for r in receiver.received) == [
            "msg_a", "msg_b", "msg_c"]
        assert sample("routing_webhook_worker_failures_total", platform=platform) == 0

    @pytest.mark.parametrize("url", ["https://10.0.0.300/hooks", "https://xn--/hooks",
                                     "http://127.0.0.1:99999/hooks"])
    async def test_an_endpoint_it_cannot_call_fails_each_attempt_and_the_worker_goes_on(
            self, outbox: Outbox, url: str) -> None:
        platform, attempts = await outbox.sent(url, "msg_1", "msg_2", "msg_3")
        assert {(d.status, d.attempts) for d in attempts.values()} == {(models.PENDING, 1)}
        assert all(d.last_error and url not in d.last_error for d in attempts.values())
        assert sample("routing_webhook_deliveries_total", platform=platform,
                      outcome="failed") == 3
        assert sample("routing_webhook_worker_failures_total", platform=platform) == 0


class TestADeadLetteredCallback:
    async def test_its_log_lines_error_is_its_last_error_without_the_urls_secrets(
            self, sqlite_url: str, caplog: pytest.LogCaptureFixture) -> None:
        """README: the dead-lettered log line's `error` says what the callback's
        `last_error` says, never the URL's token or password (a path, a query, a user)."""
        caplog.set_level(logging.WARNING, logger=delivery.__name__)
        with contextlib.closing(socket.socket()) as closed:
            closed.bind(("127.0.0.1", 0))  # bound, not listening: refused, and held
            port = closed.getsockname()[1]
            async with outbox_on(sqlite_url, timeout_seconds=5, retry=catalog.RetryPolicy(
                    max_attempts=1, base_seconds=60, max_seconds=60)) as outbox:
                platform, attempts = await outbox.sent(
                    f"http://bot:hunter2@127.0.0.1:{port}/hooks/t0ken?token=s3cret", "msg_1")
        dead = attempts["msg_1"]
        assert (dead.status, dead.attempts) == (models.DEAD, 1)
        [line] = [r for r in caplog.records if r.getMessage() == "webhook dead-lettered"]
        assert (vars(line)["platform"], vars(line)["delivery_id"]) == (platform, "msg_1")
        assert vars(line)["error"] == dead.last_error
        assert str(dead.last_error).startswith("ConnectError: ")  # the OS's reason after
        assert not [secret for secret in ("hunter2", "bot:", "t0ken", "s3cret", "/hooks")
                    if secret in str(vars(line))]


class TestAReceiverThatIsGone:
    """A 410 Gone says the receiver wants no more callbacks (the Standard Webhooks spec):
    its endpoint is disabled, as PATCH enabled=false disables it, and nothing more is
    sent to it; its callbacks wait, none dead-lettered, until an admin enables it."""

    async def test_its_endpoint_is_disabled_and_its_callbacks_wait(
            self, outbox: Outbox, webhook_receiver: Callable[..., Receiver],
            caplog: pytest.LogCaptureFixture) -> None:
        caplog.set_level(logging.WARNING, logger=delivery.__name__)
        receiver, platform = webhook_receiver(status=410), unique("desk")
        await outbox.register(platform, f"{receiver.url}?token=sekrit")
        await outbox.enqueue(platform, "msg_1", "msg_2", "msg_3")
        await outbox.drained()
        # Two in flight at once (the concurrency): the third is not sent after a 410.
        assert receiver.attempts == 2
        endpoint = await outbox.endpoints.get(platform)
        assert endpoint is not None and not endpoint.enabled
        attempts = await outbox.of(platform)
        assert {d.status for d in attempts.values()} == {models.PENDING}
        assert sorted((d.attempts, d.last_error) for d in attempts.values()) == [
            (0, None), (1, "HTTP 410"), (1, "HTTP 410")]
        assert (sample("routing_webhook_deliveries_total", platform=platform, outcome="gone"),
                sample("routing_webhook_deliveries_total", platform=platform,
                       outcome="failed")) == (2, 0)
        await outbox.drained()  # a poll after: no worker for a disabled endpoint
        assert receiver.attempts == 2

        recorded = await admin_actions.AdminActions(db.sessions(outbox.engine)).listed()
        assert [(a.action, a.target, a.actor, a.change) for a in recorded] == [
            (admin_actions.Action.ENDPOINT_GONE, platform, admin_actions.RECEIVER_GONE,
             f"url http://127.0.0.1:{receiver.port}/..., disabled"),
            (admin_actions.Action.ENDPOINT_REGISTERED, platform, admin_actions.COMMAND_LINE,
             f"url http://127.0.0.1:{receiver.port}/..., enabled")]
        # As README spells them, for an admin reading GET /v1/admin-actions.
        assert (recorded[0].action.value, recorded[0].actor) == (
            "webhook_endpoint_gone", "its receiver: HTTP 410 Gone")
        warned = [r for r in caplog.records if r.name == delivery.__name__]
        assert [(r.levelno, r.getMessage()) for r in warned] == [
            (logging.WARNING, "webhook endpoint disabled: its receiver answered 410 Gone")]
        assert vars(warned[0])["receiver"] == f"http://127.0.0.1:{receiver.port}"
        assert not any(word in str(vars(r)) for r in warned for word in ("sekrit", "/hooks"))

        receiver.status = 204  # the platform's receiver back, and its endpoint enabled
        await outbox.endpoints.update(platform, enabled=True)
        await outbox.drained()
        assert {d.status for d in (await outbox.of(platform)).values()} == {models.DELIVERED}
        assert sorted(r.headers["webhook-id"] for r in receiver.received) == [
            "msg_1", "msg_2", "msg_3"]

    @pytest.mark.parametrize("status", [301, 404])
    async def test_a_redirect_or_another_4xx_is_a_failed_attempt(
            self, outbox: Outbox, webhook_receiver: Callable[..., Receiver], status: int
            ) -> None:
        receiver = webhook_receiver(status=status)
        platform, sent = await outbox.sent(receiver.url, "msg_1")
        attempt = sent["msg_1"]
        assert (attempt.status, attempt.attempts, attempt.last_error) == (
            models.PENDING, 1, f"HTTP {status}")
        assert attempt.next_attempt_at > datetime.now(UTC)  # retried after its backoff
        endpoint = await outbox.endpoints.get(platform)
        assert endpoint is not None and endpoint.enabled and receiver.attempts == 1

    async def test_an_endpoint_whose_url_changed_meanwhile_stays_enabled(
            self, patient_outbox: Outbox, webhook_receiver: Callable[..., Receiver]) -> None:
        """The 410 came from the URL before: the one in force did not answer it."""
        new = webhook_receiver()
        platform = await patient_outbox.moved_in_flight(webhook_receiver(status=410), new.url)
        await new.wait_for(1)  # sent again at once, to the new URL
        endpoint = await patient_outbox.endpoints.get(platform)
        assert endpoint is not None and endpoint.enabled


class TestRetryAfter:
    """A 429 or 503 with Retry-After (seconds or an HTTP date): the next attempt waits
    that long when it is longer than the backoff, up to the policy's longest step."""

    @pytest.fixture
    async def hour_outbox(self, sqlite_url: str) -> AsyncIterator[Outbox]:
        """The first retry after 0.5 to 1 s, none after more than an hour."""
        async with outbox_on(sqlite_url, timeout_seconds=5, retry=catalog.RetryPolicy(
                max_attempts=3, base_seconds=1, max_seconds=3600)) as opened:
            yield opened

    @pytest.mark.parametrize(("status", "retry_after", "low", "high"), [
        (429, "600", 599, 601),
        (503, "in 900 s", 897, 901),  # an HTTP date 900 s ahead (whole seconds)
        (429, "86400", 3599, 3601),  # a day asked, the longest step waited
        (429, "soon", 0, 2),  # unreadable: the backoff
        (500, "600", 0, 2)])  # another status's Retry-After: the backoff
    async def test_the_next_attempt_waits_what_it_asks(
            self, hour_outbox: Outbox, webhook_receiver: Callable[..., Receiver], status: int,
            retry_after: str, low: float, high: float) -> None:
        if retry_after == "in 900 s":
            retry_after = email.utils.format_datetime(
                datetime.now(UTC) + timedelta(seconds=900), usegmt=True)
        receiver = webhook_receiver(status=status, headers={"Retry-After": retry_after})
        platform = unique("desk")
        await hour_outbox.register(platform, receiver.url)
        await hour_outbox.enqueue(platform, "msg_1")
        await hour_outbox.drained()
        attempt = (await hour_outbox.of(platform))["msg_1"]
        assert (attempt.status, attempt.attempts, attempt.last_error) == (
            models.PENDING, 1, f"HTTP {status}")
        waited = (attempt.next_attempt_at - attempt.updated_at).total_seconds()
        assert low <= waited <= high, waited


class TestStalledPlatforms:
    async def test_the_figures_exist_at_0_for_a_registered_platform(
            self, outbox: Outbox) -> None:
        platform = unique("desk")
        await outbox.register(platform, "https://desk.example.com/hooks")
        await outbox.deliverer.deliver_due()
        assert sample("routing_webhook_worker_failures_total", platform=platform) == 0
        assert sample("routing_webhook_oldest_due_seconds", platform=platform) == 0
        assert sample("routing_webhook_endpoint_held_seconds", platform=platform) == 0
        for outcome in ("delivered", "failed", "dead_lettered", "gone"):
            assert sample("routing_webhook_deliveries_total", platform=platform,
                          outcome=outcome) == 0, outcome
        for status in (models.PENDING, models.DEAD):
            assert sample("routing_webhook_deliveries_waiting", platform=platform,
                          status=status) == 0, status

    async def test_a_disabled_endpoints_callbacks_wait_counted_not_overdue_and_go_with_it(
            self, outbox: Outbox) -> None:
        """The outbox's pending and dead callbacks of a disabled endpoint are counted;
        how long they waited past due is not (they wait as they should); once its
        endpoint is deleted, the platform has no figures left."""
        platform = unique("desk")
        await outbox.register(platform, "https://desk.example.com/hooks")
        await outbox.endpoints.update(platform, enabled=False)
        await outbox.enqueue(platform, "msg_1", "msg_2", "msg_3")
        await outbox.deliveries.record_attempt("msg_3", status=models.DEAD, attempts=3,
                                               next_attempt_at=outbox.clock(),
                                               error="HTTP 500")
        outbox.clock.ahead = timedelta(minutes=20)
        await outbox.deliverer.deliver_due()
        assert [sample("routing_webhook_deliveries_waiting", platform=platform, status=status)
                for status in (models.PENDING, models.DEAD)] == [2, 1]
        assert sample("routing_webhook_oldest_due_seconds", platform=platform) == 0

        await outbox.endpoints.delete(platform)
        await outbox.deliverer.deliver_due()
        assert [sample("routing_webhook_deliveries_waiting", platform=platform, status=status)
                for status in (models.PENDING, models.DEAD)] == [None, None]
        assert sample("routing_webhook_oldest_due_seconds", platform=platform) is None
        assert sample("routing_webhook_endpoint_held_seconds", platform=platform) is None

    async def test_a_callback_due_and_not_sent_shows_how_long_it_waited(
            self, patient_outbox: Outbox, webhook_receiver: Callable[..., Receiver]) -> None:
        receiver, platform = webhook_receiver(), unique("desk")
        receiver.hold()  # the worker is stuck on its first callback
        await patient_outbox.register(platform, receiver.url)
        await patient_outbox.enqueue(platform, "msg_1")
        await patient_outbox.deliverer.deliver_due()
        await receiver.wait_for(1, what=lambda r: r.attempts)
        patient_outbox.clock.ahead = timedelta(minutes=20)
        await patient_outbox.deliverer.deliver_due()
        waited = sample("routing_webhook_oldest_due_seconds", platform=platform)
        assert waited is not None and waited >= 20 * 60
        receiver.release()

    async def test_a_worker_the_store_fails_under_is_counted(
            self, patient_outbox: Outbox, webhook_receiver: Callable[..., Receiver]) -> None:
        receiver, platform = webhook_receiver(), unique("desk")
        receiver.hold()
        await patient_outbox.register(platform, receiver.url)
        await patient_outbox.enqueue(platform, "msg_1", "msg_2")
        await patient_outbox.deliverer.deliver_due()
        await receiver.wait_for(2, what=lambda r: r.attempts)
        async with patient_outbox.engine.begin() as connection:  # the outbox gone under the worker
            await connection.execute(text(
                "ALTER TABLE webhook_deliveries RENAME TO webhook_deliveries_away"))
        receiver.release()
        await receiver.wait_for(1, what=lambda _r: int(not patient_outbox.deliverer.working))
        assert sample("routing_webhook_worker_failures_total", platform=platform) == 1

        async with patient_outbox.engine.begin() as connection:  # the store back
            await connection.execute(text(
                "ALTER TABLE webhook_deliveries_away RENAME TO webhook_deliveries"))
        await patient_outbox.drained()  # the next poll starts another worker
        assert {d.status for d in (await patient_outbox.of(platform)).values()} == {
            models.DELIVERED}


@pytest.fixture(scope="module")
def authority() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
async def tls_outbox(sqlite_url: str, authority: trustme.CA) -> AsyncIterator[Outbox]:
    """A half-second deadline per attempt; receivers' certificates from `authority`."""
    client = ssl.create_default_context()
    authority.configure_trust(client)
    async with outbox_on(sqlite_url, timeout_seconds=0.5, tls=client) as opened:
        yield opened


def server_context(authority: trustme.CA, name: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert(name).configure_cert(context)
    return context


class TestHttpsReceiversLookedUpOnTheirPlatformsThread:
    """lookups.py: a worker looks its receiver's host name up on threads of its own; it
    connects to the addresses as anyio does, and TLS is checked against the host name."""

    @pytest.fixture
    def resolver(self, monkeypatch: pytest.MonkeyPatch) -> Iterator[Resolver]:
        stub = Resolver(socket.getaddrinfo)
        monkeypatch.setattr(socket, "getaddrinfo", stub)
        yield stub
        stub.never.set()

    async def test_a_receiver_with_a_certificate_for_its_name_gets_its_callbacks(
            self, tls_outbox: Outbox, authority: trustme.CA, resolver: Resolver,
            webhook_receiver: Callable[..., Receiver]) -> None:
        receiver = webhook_receiver(tls=server_context(authority, "localhost"))
        platform = unique("desk")
        await tls_outbox.register(platform, receiver.url)
        await tls_outbox.enqueue(platform, "msg_1", "msg_2")
        await tls_outbox.drained()
        attempts = await tls_outbox.of(platform)
        assert {(d.status, d.attempts) for d in attempts.values()} == {(models.DELIVERED, 1)}
        assert receiver.url.startswith("https://localhost:") and len(receiver.received) == 2
        assert resolver.threads["localhost"] and all(
            name.startswith(f"webhook-lookups-{platform}")
            for name in resolver.threads["localhost"])

    async def test_a_certificate_for_another_name_is_refused(
            self, tls_outbox: Outbox, authority: trustme.CA,
            webhook_receiver: Callable[..., Receiver]) -> None:
        receiver = webhook_receiver(tls=server_context(authority, "desk.example.com"))
        platform = unique("desk")
        await tls_outbox.register(platform, receiver.url)
        await tls_outbox.enqueue(platform, "msg_1")
        await tls_outbox.drained()
        attempt = (await tls_outbox.of(platform))["msg_1"]
        assert attempt.status == models.PENDING and attempt.last_error is not None
        assert "CERTIFICATE_VERIFY_FAILED" in attempt.last_error
        assert receiver.received == []

    async def test_a_platform_whose_lookups_hang_holds_up_no_other(
            self, tls_outbox: Outbox, authority: trustme.CA, resolver: Resolver,
            webhook_receiver: Callable[..., Receiver]) -> None:
        """Its lookups never answer (a DNS server dropping queries): each attempt gives up
        at its deadline, the thread doing the lookup does not. Looked up on asyncio's
        shared threads (six on this machine), they would all be taken after as many
        attempts, and no other platform's host name could be looked up: each is looked
        up on its own platform's threads."""
        hanging = unique("hanging")
        await tls_outbox.register(hanging, f"https://{Resolver.HANGING}/hooks")
        await tls_outbox.enqueue(hanging, *(f"msg_h{n}" for n in range(12)))
        await tls_outbox.deliverer.deliver_due()
        deadline = time.monotonic() + 30
        while sum(d.attempts for d in (await tls_outbox.of(hanging)).values()) < 4:
            assert time.monotonic() < deadline, "the hanging platform made no attempts"
            await asyncio.sleep(0.05)
        receiver = webhook_receiver(tls=server_context(authority, "localhost"))
        platform = unique("desk")
        await tls_outbox.register(platform, receiver.url)
        await tls_outbox.enqueue(platform, "msg_1", "msg_2")
        await tls_outbox.deliverer.deliver_due()
        await receiver.wait_for(2, within=30)
        # Received; each recorded as delivered once its answer is read (the hanging
        # platform's workers never finish, so not `drained`).
        deadline = time.monotonic() + 10
        while {d.status for d in (await tls_outbox.of(platform)).values()} != {
                models.DELIVERED}:
            assert time.monotonic() < deadline, await tls_outbox.of(platform)
            await asyncio.sleep(0.05)
        assert all(name.startswith(f"webhook-lookups-{hanging}")
                   for name in resolver.threads[Resolver.HANGING])

    async def test_an_address_that_does_not_answer_is_passed_for_the_next(
            self, sqlite_url: str, resolver: Resolver,
            webhook_receiver: Callable[..., Receiver]) -> None:
        """The name's first address drops connections (a full backlog: what a broken
        AAAA record does), its second answers: the second is tried 250 ms after the
        first, as anyio tries them, and the callback delivered well within its 3 s."""
        receiver = webhook_receiver()
        with black_hole(receiver.port) as dropped:
            resolver.addresses[Resolver.TWO_ADDRESSES] = [dropped, "127.0.0.1"]
            async with outbox_on(sqlite_url, timeout_seconds=3.0) as outbox:
                platform = unique("desk")
                await outbox.register(
                    platform, f"http://{Resolver.TWO_ADDRESSES}:{receiver.port}/hooks")
                await outbox.enqueue(platform, "msg_1")
                await outbox.drained()
                attempt = (await outbox.of(platform))["msg_1"]
        assert (attempt.status, attempt.last_error) == (models.DELIVERED, None)


    async def test_a_platforms_lookup_threads_go_with_its_endpoint(
            self, outbox: Outbox, resolver: Resolver,
            webhook_receiver: Callable[..., Receiver]) -> None:
        """Kept from one worker to the next, they end once the endpoint is deleted and a
        poll finds no worker sending for it."""
        receiver, platform = webhook_receiver(), unique("desk")
        resolver.addresses["hooks.gone.test"] = ["127.0.0.1"]
        await outbox.register(platform, f"http://hooks.gone.test:{receiver.port}/hooks")
        await outbox.enqueue(platform, "msg_1")
        await outbox.drained()
        assert (await outbox.of(platform))["msg_1"].status == models.DELIVERED
        assert lookup_threads(platform)  # kept for the next worker
        assert await outbox.endpoints.delete(platform) is not None
        await outbox.drained()
        deadline = time.monotonic() + 10
        while lookup_threads(platform):
            assert time.monotonic() < deadline, "its lookup threads outlived its endpoint"
            await asyncio.sleep(0.05)


def lookup_threads(platform: str) -> list[str]:
    return [thread.name for thread in threading.enumerate()
            if thread.name.startswith(f"webhook-lookups-{platform}")]


class Resolver:
    """socket.getaddrinfo, but for the test's names: HANGING never answers (until the test
    ends), TWO_ADDRESSES gives `addresses` in order; the threads each name was looked up
    on, by name."""

    HANGING = "hooks.hanging.test"
    TWO_ADDRESSES = "hooks.two.test"

    def __init__(self, looked_up: Callable[..., Any]) -> None:
        self.looked_up = looked_up
        self.never = threading.Event()
        self.addresses: dict[str, list[str]] = {}
        self.threads: dict[str, list[str]] = {}

    def __call__(self, host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else str(host)
        self.threads.setdefault(name, []).append(threading.current_thread().name)
        if name == self.HANGING:
            self.never.wait(60)
            raise socket.gaierror(socket.EAI_AGAIN, "no answer")
        if name in self.addresses:
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, int(port)))
                    for address in self.addresses[name]]
        return self.looked_up(host, port, *args, **kwargs)


@contextlib.contextmanager
def black_hole(port: int) -> Iterator[str]:
    """A loopback address whose `port` drops new connections: a listener that takes
    none, its backlog filled."""
    address = "127.0.0.2"
    listener = socket.socket()
    listener.bind((address, port))
    listener.listen(0)
    fillers = []
    for _ in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect((address, port))
        fillers.append(filler)
    try:
        yield address
    finally:
        for sock in (*fillers, listener):
            sock.close()
