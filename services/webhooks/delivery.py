"""The delivery workers: callbacks from the outbox to the platforms, signed per the
Standard Webhooks spec, at least once.

Each platform has its own worker, its own HTTP client and its own concurrency limit: a
receiver that is slow or down holds up its own callbacks only. A failed attempt (an
error, a timeout, any answer but 2xx) is retried with exponential backoff and jitter;
a 429 or 503 waits at least what its Retry-After asks, up to the longest step. A
receiver asking to slow down (a 429, a 503 with Retry-After) has its whole endpoint held
for that wait (`catalog.RetryPolicy.hold_after`), in the store, so that no worker of the
fleet sends it anything before then: the rest of the worker's batch is not sent (its
callbacks keep their attempts), those in flight finish. When the
attempts are used up, the callback is dead-lettered (listed, replayable). A receiver
answering 410 Gone has its endpoint disabled (its callbacks wait, as an admin's
disabling leaves them), and is sent nothing more until it is enabled again. An answer's
body is never read: its status (and Retry-After) says it all, and a receiver must not
make the router hold a large answer. A callback the sender cannot even send (a URL or a
header it cannot build) fails that callback's attempt alone; only the store failing
stops a worker, counted in `WORKER_FAILURES`, and the next poll starts another.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
import standardwebhooks
from prometheus_client import Counter, Gauge

from services.webhooks import catalog, endpoint_store, lookups, models, outbox_store
from services.webhooks.models import WebhookDeliveryRow

logger = logging.getLogger(__name__)

LEASE = "webhook-delivery"
OUTCOMES = ("delivered", "failed", "dead_lettered", "gone")
DELIVERIES = Counter("routing_webhook_deliveries_total",
                     "Callback attempts to platforms, by outcome: delivered, failed (to be"
                     " retried or dead-lettered), dead_lettered (attempts used up), gone"
                     " (answered 410 Gone: the endpoint disabled, its callbacks waiting)",
                     ["platform", "outcome"])
WORKER_FAILURES = Counter("routing_webhook_worker_failures_total",
                          "Delivery workers of a platform stopped by an error (the store"
                          " failing): its callbacks wait for the next poll's worker",
                          ["platform"])
OLDEST_DUE = Gauge("routing_webhook_oldest_due_seconds",
                   "How long the platform's callback due longest has waited past its time"
                   " to be sent (0: none due; an enabled endpoint's only)", ["platform"])
HELD = Gauge("routing_webhook_endpoint_held_seconds",
             "How long the platform's endpoint is still held, nothing sent to it: its"
             " receiver answered 429, or 503 with Retry-After (0: not held)", ["platform"])
WAITING = Gauge("routing_webhook_deliveries_waiting",
                "Callbacks in the outbox, by status: pending (to send) or dead (dead-lettered,"
                " awaiting a replay)", ["platform", "status"])


class Deliverer:
    def __init__(self, deliveries: outbox_store.Deliveries, endpoints: endpoint_store.Endpoints, *,
                 retry: catalog.RetryPolicy, timeout_seconds: float, concurrency: int,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC),
                 tls: ssl.SSLContext | None = None) -> None:
        self._deliveries = deliveries
        self._endpoints = endpoints
        self._retry = retry
        self._timeout = timeout_seconds
        self._concurrency = concurrency
        self._now = now
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._lookups: dict[str, lookups.OwnLookups] = {}  # each platform's, see there
        # Made once: loading the trust store is about 15 ms of the loop's time, which a
        # client of its own would spend for each worker a poll starts. (`tls`: the tests'
        # receivers' own certificate authority.)
        self._tls = tls or httpx.create_ssl_context()

    async def deliver_due(self) -> None:
        """Start a worker for each platform with callbacks due and none running (called
        periodically); does not wait for them."""
        for platform in await self._deliveries.due_platforms(self._now()):
            worker = self._workers.get(platform)
            if worker is None or worker.done():
                self._workers[platform] = asyncio.create_task(
                    self._drain(platform), name=f"webhooks-{platform}")
        await self._sample()

    async def close(self) -> None:
        workers = list(self._workers.values())
        self._workers.clear()
        for worker in workers:
            worker.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        self._forget_lookups(*list(self._lookups))

    async def stand_down(self) -> None:
        """Another instance holds the delivery lease now: stop sending (a callback cut
        short is sent again by the holder, at least once), and leave the outbox's figures
        to it. The figures go first, so that once no worker is listed none is shown."""
        WAITING.clear()
        OLDEST_DUE.clear()
        HELD.clear()
        await self.close()

    @property
    def working(self) -> list[str]:
        """The platforms whose worker is sending."""
        return sorted(platform for platform, worker in self._workers.items()
                      if not worker.done())

    async def _drain(self, platform: str) -> None:
        """Send the platform's due callbacks until none is left due (none for a platform
        whose endpoint is disabled or gone: its callbacks wait, and no client is made)."""
        try:
            target, due = await self._next(platform)
            if target is None:
                self._forget_lookups(platform)  # its endpoint gone or disabled
            if target is None or not due:
                return
            async with httpx.AsyncClient(timeout=self._timeout, verify=self._tls,
                                         transport=self._transport(platform, target.url)
                                         ) as client:
                limit = asyncio.Semaphore(self._concurrency)
                while target is not None and due:
                    signers = [standardwebhooks.Webhook(secret) for secret in target.secrets]
                    # The receiver answered 410, or asked to wait: nothing more to it.
                    stopped = asyncio.Event()

                    async def send(row: WebhookDeliveryRow, url: str = target.url,
                                   signers: list[standardwebhooks.Webhook] = signers,
                                   stopped: asyncio.Event = stopped) -> None:
                        async with limit:
                            if not stopped.is_set() and await self._attempt(
                                    client, url, signers, row):
                                stopped.set()

                    # A send fails only when the store does: the others are cancelled and
                    # awaited, none left running on a closed client.
                    async with asyncio.TaskGroup() as sends:
                        for row in due:
                            sends.create_task(send(row))
                    target, due = await self._next(platform)
        except Exception:
            WORKER_FAILURES.labels(platform).inc()
            logger.exception("webhook worker stopped", extra={"platform": platform})

    def _transport(self, platform: str, url: str) -> httpx.AsyncBaseTransport | None:
        """The platform's transport: over its own lookups (kept for its next workers),
        or httpx's own (None) when a proxy takes its requests."""
        if lookups.proxied(url):
            return None
        own = self._lookups.get(platform)
        if own is None:
            own = self._lookups[platform] = lookups.OwnLookups(
                platform, threads=self._concurrency)
        return lookups.LookingUpOwn(self._tls, own, connections=self._concurrency)

    def _forget_lookups(self, *platforms: str) -> None:
        for platform in platforms:
            own = self._lookups.pop(platform, None)
            if own is not None:
                own.close()

    async def _next(self, platform: str
                    ) -> tuple[endpoint_store.Target | None, list[WebhookDeliveryRow]]:
        """The platform's endpoint as it stands, and its next callbacks due."""
        target = await self._endpoints.target(platform)
        if target is None:
            return None, []
        return target, await self._deliveries.due(platform, self._now(),
                                                  limit=4 * self._concurrency)

    async def _attempt(self, client: httpx.AsyncClient, url: str,
                       signers: list[standardwebhooks.Webhook], row: WebhookDeliveryRow
                       ) -> bool:
        """One attempt, recorded; True when nothing more is to be sent to the receiver:
        it answered 410 Gone, or asked to wait (its endpoint held)."""
        failed = await send_callback(client, url, signers, row, sent_at=self._now(),
                                     timeout_seconds=self._timeout)
        attempts = row.attempts + 1
        if failed is not None and failed.gone:
            await self._gone(url, row, attempts, failed)
            return True
        hold = None if failed is None else self._retry.hold_after(failed)
        if failed is not None and hold is not None:
            await self._hold(url, row, failed, hold)
        delay = None if failed is None else self._retry.delay_after(
            attempts, asked=failed.retry_after)
        status = (models.DELIVERED if failed is None
                  else models.DEAD if delay is None else models.PENDING)
        error = None if failed is None else failed.error
        await self._deliveries.record_attempt(
            row.delivery_id, status=status, attempts=attempts,
            next_attempt_at=self._now() + timedelta(seconds=delay or 0), error=error)
        # Counted once recorded: what the metrics say, the outbox already holds.
        DELIVERIES.labels(row.platform, "delivered" if failed is None else "failed").inc()
        if status == models.DEAD:
            DELIVERIES.labels(row.platform, "dead_lettered").inc()
            logger.warning("webhook dead-lettered", extra={
                "platform": row.platform, "delivery_id": row.delivery_id, "error": error})
        return hold is not None

    async def _hold(self, url: str, row: WebhookDeliveryRow, failed: catalog.Failed,
                    seconds: float) -> None:
        """The receiver at `url` asked to be sent nothing for `seconds`: its endpoint is
        held that long, for every worker of the fleet, and its callbacks wait with their
        attempts unspent (this one's failed attempt is recorded as any other). Said once
        a hold, by whichever attempt started it."""
        now = self._now()
        started = await self._endpoints.hold(
            row.platform, url=url, until=now + timedelta(seconds=seconds), now=now)
        if started:
            logger.warning("webhook endpoint held: its receiver asked to wait", extra={
                "platform": row.platform, "receiver": catalog.origin_of(url),
                "status": failed.status, "wait_seconds": seconds})

    async def _gone(self, url: str, row: WebhookDeliveryRow, attempts: int,
                    failed: catalog.Failed) -> None:
        """The receiver wants no more callbacks: its endpoint is disabled, and this
        callback waits with the others (due again once an admin enables the endpoint,
        never dead-lettered for it). An endpoint whose URL changed since is left as it is:
        the callback is due again at once, to the new one."""
        disabled = await self._endpoints.disable_gone(row.platform, url=url)
        await self._deliveries.record_attempt(
            row.delivery_id, status=models.PENDING, attempts=attempts,
            next_attempt_at=self._now(), error=failed.error)
        DELIVERIES.labels(row.platform, "gone").inc()
        if disabled:
            logger.warning("webhook endpoint disabled: its receiver answered 410 Gone", extra={
                "platform": row.platform, "receiver": catalog.origin_of(url),
                "delivery_id": row.delivery_id})

    async def _sample(self) -> None:
        now = self._now()
        counts = await self._deliveries.counts()
        due_since = await self._deliveries.due_since(now)
        held = await self._endpoints.held(now)
        platforms = await self._endpoints.platforms()
        # Endpoints deleted: their lookups let go, but for a worker still sending (its
        # endpoint may be registered again meanwhile; it lets them go itself if not).
        self._forget_lookups(*(set(self._lookups) - platforms - set(self.working)))
        # Set anew, not updated: a platform deleted since has no figures left standing.
        WAITING.clear()
        OLDEST_DUE.clear()
        HELD.clear()
        for platform in platforms:
            WORKER_FAILURES.labels(platform)  # exported at 0 until something happens
            for outcome in OUTCOMES:
                DELIVERIES.labels(platform, outcome)
            for status in (models.PENDING, models.DEAD):
                WAITING.labels(platform, status).set(counts.get((platform, status), 0))
            since = due_since.get(platform)
            OLDEST_DUE.labels(platform).set(
                0 if since is None else max(0.0, (now - since).total_seconds()))
            until = held.get(platform)
            HELD.labels(platform).set(0 if until is None else (until - now).total_seconds())


async def send_callback(client: httpx.AsyncClient, url: str,
                        signers: list[standardwebhooks.Webhook], row: WebhookDeliveryRow, *,
                        sent_at: datetime, timeout_seconds: float) -> catalog.Failed | None:
    """One attempt at a callback, within `timeout_seconds` in all (httpx's timeout is per
    read: a receiver sending a byte at a time would hold it forever): None when the
    receiver took it (2xx), else what went wrong (`catalog.answered`). The answer's body
    is not read: the stream is closed once its status is in."""
    try:
        async with asyncio.timeout(timeout_seconds):
            request = client.build_request("POST", url, content=row.body.encode(),
                                           headers=_signed_headers(row, signers, sent_at))
            answer = await client.send(request, stream=True)
            await answer.aclose()
            return catalog.answered(answer.status_code,
                                    retry_after=answer.headers.get("retry-after"), now=sent_at)
    except TimeoutError:
        return catalog.Failed(f"TimeoutError: no answer within {timeout_seconds:g} s")
    except Exception as exc:
        # Also a request the sender cannot build or send (a URL registered before it was
        # checked, a header it cannot encode): this callback's failure alone.
        return catalog.Failed(failure_of(exc)[:models.MAX_LAST_ERROR])


def failure_of(exc: BaseException) -> str:
    """What a failed attempt's error says of itself, as the callback's last error (shown
    to admins) and the logs keep it: its class, and the operating system's reason if one
    caused it (`ConnectError: Name or service not known`). Never its own message: httpx's
    and the sender's may quote the URL, whose path, query or user and password may hold
    the receiver's token."""
    cause: BaseException | None = exc
    for _ in range(_CAUSES_READ):
        if cause is None:
            break
        if isinstance(cause, OSError) and cause.strerror:
            return f"{type(exc).__name__}: {cause.strerror}"
        cause = cause.__cause__ or cause.__context__
    return type(exc).__name__


# How far down an error's causes its OS reason is looked for (httpx's wraps httpcore's,
# which wraps the socket's; a chain is never a loop, but is not trusted not to be).
_CAUSES_READ = 8


def _signed_headers(row: WebhookDeliveryRow, signers: list[standardwebhooks.Webhook],
                    sent_at: datetime) -> dict[str, str]:
    # One signature per secret in force (space-separated, as the spec allows).
    signatures = " ".join(signer.sign(row.delivery_id, sent_at, row.body)
                          for signer in signers)
    return {"content-type": "application/json", "webhook-id": row.delivery_id,
            "webhook-timestamp": str(int(sent_at.timestamp())),
            "webhook-signature": signatures}
