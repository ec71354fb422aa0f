"""A publisher whose acknowledgement is a Kafka transaction commit, shared by concurrent
callers (group commit).

`publish` returns once the transaction holding the caller's events is committed, so
read_committed readers see them exactly once. When it raises `PublishFailed`, the
transaction was not committed and is never committed afterwards: the producer that
holds it aborts it and is dropped, and the next transaction starts on a fresh producer
with the same transactional id, which fences the old one (the broker aborts whatever
the old one left open). A process killed mid-transaction is fenced the same way by its
successor.

Several producers share the callers (`producers`, each with its own transactional id
`<transactional_id>-<n>`): a producer that has just committed cannot start its next
transaction until the broker has written the last one's markers (it answers
CONCURRENT_TRANSACTIONS, and the producer asks again after
`kafka_tuning.CONCURRENT_TRANSACTIONS_RETRY_SECONDS`), so while one waits another takes
the queued callers. A restarted intake with the same ids fences each of them.

Under load (callers coming more often than once a `gather_seconds`), a producer waits up
to `gather_seconds` before it takes the queued callers, so that more of them share its
transaction: every transaction costs the intake and the broker about the same CPU
whatever it holds (its requests, the markers), and without the wait a free producer
takes the first caller of a burst alone (callers answered together come back
together). At a lower rate callers are taken at once: the wait would delay them for
little gain.
This is not a producer's linger (`kafka_tuning.linger_ms`, 0 for a transactional one):
the linger holds records already in a transaction, whose partitions wait for the
broker anyway; this holds the callers before the transaction begins.

One window remains (see `_Committer.commit`): the commit request was sent, the broker did not
answer in time, and yet it committed. The caller was told it failed while its events
are delivered; a caller that retries with the same ticket id then delivers it twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from aiokafka import AIOKafkaProducer
from aiokafka.errors import InvalidProducerEpoch, ProducerFenced
from prometheus_client import Counter, Histogram

from services.core import envelope, kafka
from services.core.settings import Settings

logger = logging.getLogger(__name__)

# Bounds on one transaction, so that a burst does not make one huge one: its requests,
# and the bytes of their records (a platform sending the largest tickets, within its
# rate limit, would otherwise fill transactions that other platforms' requests share
# with megabytes, past their deadline; a request larger than this goes alone).
MAX_REQUESTS_PER_TRANSACTION = 500
MAX_TRANSACTION_BYTES = 4 * 1024 * 1024


def longest_publish(settings: Settings) -> timedelta:
    """The longest a caller of `TransactionalPublisher.publish` waits for its answer:
    until its deadline (PRODUCE_TIMEOUT_SECONDS after it came) for its records to be
    acknowledged, then the commit's own timeout (`_Committer.commit`)."""
    return timedelta(seconds=2 * settings.produce_timeout_seconds)

TRANSACTION_REQUESTS = Histogram(
    "routing_intake_transaction_requests",
    "Intake requests committed (or failed) together in one transaction",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, MAX_REQUESTS_PER_TRANSACTION))
FENCED = Counter(
    "routing_intake_producers_fenced_total",
    "Intake transactions failed because their producer was fenced: another process"
    " started one with the same transactional id (two intakes running with one"
    " INSTANCE_ID), or a transaction outlived the broker's transaction timeout")


@dataclass(frozen=True)
class _Request:
    records: Sequence[envelope.Record]
    arrived: float  # event-loop time
    deadline: float  # event-loop time by which its records must be acknowledged
    committed: asyncio.Future[None]
    size: int  # its records' bytes, as a producer writes them


class TransactionalPublisher:
    """Publishes each call's events in a transaction that an idle committer shares
    between every call queued meanwhile; returns once that transaction is committed.
    It holds no producer itself: each committer holds one."""

    def __init__(self, settings: Settings, *, client_id: str, transactional_id: str,
                 producers: int = 1, gather_seconds: float = 0.0) -> None:
        self._settings = settings
        self._gather_seconds = gather_seconds
        self._arrival_gap = ArrivalGap(longest=10 * gather_seconds)
        self._queue: list[_Request] = []
        self._queued_bytes = 0
        self._queued = asyncio.Event()
        self._full = asyncio.Event()  # a full transaction queued, or closing: take it now
        self._committers = [
            _Committer(settings, client_id=f"{client_id}-{n}",
                       transactional_id=f"{transactional_id}-{n}")
            for n in range(producers)]
        self._running: list[asyncio.Task[None]] = []
        self._closing = False

    @property
    def transactional_ids(self) -> list[str]:
        """Its producers' transactional ids, one a producer."""
        return [committer.transactional_id for committer in self._committers]

    @property
    def gather_seconds(self) -> float:
        return self._gather_seconds

    async def publish(self, outputs: Sequence[kafka.Publishable]) -> None:
        """Raises envelope.Unserialisable for an output that cannot be written: checked
        here, before the request joins a transaction shared with other callers."""
        written = kafka.records(outputs)
        if self._closing:
            raise kafka.PublishFailed("shutting down")
        loop = asyncio.get_running_loop()
        now = loop.time()
        self._arrival_gap.arrived(now)
        request = _Request(written, now, now + self._settings.produce_timeout_seconds,
                           loop.create_future(), sum(record.size for record in written))
        self._queue.append(request)
        self._queued_bytes += request.size
        self._queued.set()
        if self._a_full_transaction_queued():
            self._full.set()
        if not self._running:
            self._running = [asyncio.create_task(self._commit_queued(committer),
                                                 name=f"group-commit-{n}")
                             for n, committer in enumerate(self._committers)]
        await request.committed

    @property
    def connected(self) -> bool:
        return any(committer.connected for committer in self._committers)

    async def close(self) -> None:
        """Commit (or fail) what is queued, then stop the producers."""
        self._closing = True
        self._queued.set()
        self._full.set()
        await asyncio.gather(*self._running)
        await asyncio.gather(*(committer.close() for committer in self._committers))

    def _take(self) -> list[_Request]:
        """The queued requests of the next transaction, first come first: up to
        MAX_REQUESTS_PER_TRANSACTION of them, whose records' bytes come to at most
        MAX_TRANSACTION_BYTES (the first is taken whatever its size)."""
        count, size = 0, 0
        for request in self._queue[:MAX_REQUESTS_PER_TRANSACTION]:
            if count and size + request.size > MAX_TRANSACTION_BYTES:
                break
            count, size = count + 1, size + request.size
        taken = self._queue[:count]
        del self._queue[:count]
        self._queued_bytes -= size
        if not self._queue:
            self._queued.clear()
        if not self._a_full_transaction_queued() and not self._closing:
            self._full.clear()
        return taken

    def _a_full_transaction_queued(self) -> bool:
        return (len(self._queue) >= MAX_REQUESTS_PER_TRANSACTION
                or self._queued_bytes >= MAX_TRANSACTION_BYTES)

    async def _commit_queued(self, committer: _Committer) -> None:
        """One committer's loop: whenever it is idle and callers are queued, it takes
        them (up to the bound) into its next transaction."""
        while not (self._closing and not self._queue):
            await self._queued.wait()
            await self._gather()
            taken = self._take()
            now = asyncio.get_running_loop().time()
            waiting = [request for request in taken if not request.committed.done()]
            late = [request for request in waiting if request.deadline <= now]
            _settle(late, "queued past the deadline behind a failing transaction")
            batch = [request for request in waiting if request.deadline > now]
            if batch:
                TRANSACTION_REQUESTS.observe(len(batch))
                await committer.commit(batch)

    async def _gather(self) -> None:
        """Under load (callers coming more often than once a `gather_seconds`), wait
        for more callers to join the queued ones: until `gather_seconds` after the first
        of them arrived (so a caller that waited through a commit is not held again, and
        every free producer's wait ends together), and at most half the time it has
        left; not once a full transaction is queued, nor on closing."""
        if not (self._gather_seconds > 0 and self._queue
                and self._arrival_gap.seconds < self._gather_seconds):
            return
        first = self._queue[0]
        now = asyncio.get_running_loop().time()
        until = min(first.arrived + self._gather_seconds, now + (first.deadline - now) / 2)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout_at(until):
                await self._full.wait()


class _Committer(kafka.Publisher):
    """One transactional producer, committing one batch of requests at a time."""

    def __init__(self, settings: Settings, *, client_id: str, transactional_id: str) -> None:
        super().__init__(settings, client_id=client_id)
        self._transactional_id = transactional_id
        self._fencing = _Fencing(transactional_id)

    @property
    def transactional_id(self) -> str:
        return self._transactional_id

    async def close(self) -> None:
        """Stop the producer. Producers still aborting a failed transaction get one
        timeout to finish (the broker aborts it itself after the transaction timeout)."""
        if self._stopping:
            _, stuck = await asyncio.wait(self._stopping,
                                          timeout=self._settings.produce_timeout_seconds)
            for task in stuck:
                task.cancel()
            await asyncio.gather(*stuck, return_exceptions=True)
        await super().close()

    def _new_producer(self) -> AIOKafkaProducer:
        return kafka.producer(self._settings, client_id=self._client_id,
                              transactional_id=self._transactional_id)

    async def commit(self, batch: list[_Request]) -> None:
        """One transaction for the whole batch: every request is committed, or none."""
        active: AIOKafkaProducer | None = None
        commit_sent = False
        try:
            # Until every record is acknowledged, the earliest deadline of the batch
            # holds, and a failure leaves a transaction that will never commit.
            async with asyncio.timeout_at(min(request.deadline for request in batch)):
                active = await self._started()
                await active.begin_transaction()
                await kafka.send_all(active, (record for request in batch
                                              for record in request.records))
            # The broker holds every record: the commit is a single request to it, sent
            # only now and given a timeout of its own, so that a deadline running out
            # never interrupts it. Only if it goes unanswered are callers told of a
            # failure for a transaction the broker may have committed.
            commit_sent = True
            async with asyncio.timeout(self._settings.produce_timeout_seconds):
                await active.commit_transaction()
        except Exception as exc:  # aiokafka raises assertion errors in a broken state too
            reason = "the broker did not acknowledge in time" if isinstance(
                exc, TimeoutError) else f"{type(exc).__name__}: {exc}"
            if isinstance(exc, ProducerFenced | InvalidProducerEpoch):
                self._fencing.fenced(time.monotonic())  # said once a minute, not each time
            else:
                logger.warning("transaction not committed", extra={
                    "requests": len(batch), "error": reason, "commit_sent": commit_sent})
            self._abandon(abort=active is not None and not commit_sent)
            _settle(batch, reason)
        else:
            _settle(batch, None)

    def _abandon(self, *, abort: bool) -> None:
        """Drop the producer of a failed transaction; the next one starts afresh."""
        stale, self._producer = self._producer, None
        if stale is not None:
            self._in_background(self._abort_and_stop(stale) if abort
                                else self._stop_quietly(stale))

    async def _abort_and_stop(self, stale: AIOKafkaProducer) -> None:
        # Completes once the broker is back, unless the next producer fences this one
        # first: the broker then aborts the transaction itself.
        try:
            await stale.abort_transaction()
        except Exception:
            logger.info("transaction not aborted by its producer (fenced, or broker gone)",
                        exc_info=True)
        await self._stop_quietly(stale)


class _Fencing:
    """Says when a committer's producer is fenced. A restarted intake fences its
    predecessor, which is gone by then: a live producer fenced means another running
    process uses its transactional ids, and the two fail each other's requests until one
    stops (each of their transactions, dozens a second under load); or, less likely (a
    transaction here lasts seconds at most), that a transaction outlived the broker's
    transaction timeout, which aiokafka reports the same way. Each time is counted; the
    error is logged at once, then at most once a `LOG_SECONDS`, with how many times it
    happened since (the times after the last message are in the counter only)."""

    LOG_SECONDS = 60.0

    def __init__(self, transactional_id: str) -> None:
        self._transactional_id = transactional_id
        self._logged_at: float | None = None
        self._unlogged = 0

    def fenced(self, now: float) -> None:
        FENCED.inc()
        self._unlogged += 1
        if self._logged_at is not None and now - self._logged_at < self.LOG_SECONDS:
            return
        logger.error("this intake's producer was fenced: another process started a producer"
                     " with its transactional id, so two intakes run with one INSTANCE_ID"
                     " and fail each other's tickets (give each its own INSTANCE_ID); or,"
                     " less likely, a transaction outlived the broker's transaction timeout",
                     extra={"transactional_id": self._transactional_id,
                            "times_fenced": self._unlogged})
        self._logged_at, self._unlogged = now, 0


class ArrivalGap:
    """The recent time between callers: a moving average (each new gap weighs a tenth).
    A gap counts as `longest` at most. Set to ten times the window the average is
    compared with, one quiet spell lifts the average over the window, and a burst
    brings it back under within about two dozen callers, however long the spell. Unknown
    until two callers came."""

    WEIGHT = 0.1

    def __init__(self, longest: float) -> None:
        self.seconds = float("inf")
        self._longest = longest
        self._last: float | None = None

    def arrived(self, now: float) -> None:
        if self._last is not None:
            gap = min(now - self._last, self._longest)
            self.seconds = gap if self.seconds == float("inf") else (
                self.seconds + self.WEIGHT * (gap - self.seconds))
        self._last = now


def _settle(requests: Sequence[_Request], failure: str | None) -> None:
    for request in requests:
        if request.committed.done():
            continue  # the caller went away
        if failure is None:
            request.committed.set_result(None)
        else:
            request.committed.set_exception(kafka.PublishFailed(failure))
