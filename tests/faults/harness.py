"""What every fault scenario shares: a steady load of tickets posted over HTTP, a
`read_committed` watch on the department queues, and the final count of tickets
acknowledged (202) against tickets delivered.

Times are `time.monotonic()` seconds throughout (the event loop's clock too)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import httpx
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError

from services.core import envelope
from services.router import table_file
from tests.conftest import (
    TEST_ROUTING_TABLE,
    Pipeline,
    department_lanes,
    read_topic,
    readable,
    unique,
)

logger = logging.getLogger(__name__)

# Demo customers (known to the seeded store) and two the store does not know.
CUSTOMERS = ("gov-ministry-1", "org-acme-1", "ind-vip-1", "ind-rising-1", "ind-loyal-1",
             "ind-new-1", "stranger-1", "stranger-2")


def all_lanes() -> list[str]:
    """Every lane topic of every department of the test routing table."""
    return department_lanes(*table_file.load(TEST_ROUTING_TABLE).departments)


@dataclass
class Shutdown:
    """How the pipeline's services ended when stopped (SIGTERM, SIGKILL after 20 s)."""

    exit_codes: dict[str, int | None] = field(default_factory=dict)

    def unclean(self) -> list[str]:
        # uvicorn raises SIGTERM again after a clean shutdown; None: stopped earlier.
        return [name for name, code in self.exit_codes.items()
                if code not in (0, -signal.SIGTERM, None)]

    def describe(self) -> str:
        unclean = self.unclean()
        return f"; SIGTERM did not end {', '.join(unclean)} (killed)" if unclean else ""


@contextlib.asynccontextmanager
async def running(pipeline: Pipeline) -> AsyncIterator[Shutdown]:
    """Start the pipeline's services (blocking calls, off the event loop); stop them all
    at once after, and record how each ended."""
    shutdown = Shutdown()
    try:
        await asyncio.to_thread(pipeline.start)
        yield shutdown
    finally:
        codes = await asyncio.gather(*(asyncio.to_thread(service.stop)
                                       for service in pipeline.services.values()))
        shutdown.exit_codes.update(zip(pipeline.services, codes, strict=True))


@dataclass(frozen=True)
class Answer:
    """What the intake answered one POST (status None: no answer, the intake was down)."""

    subject: str
    posted_at: float
    answered_at: float
    status: int | None
    ticket_id: str | None


class Load:
    """Posts tickets `subject="<prefix> <n>"` at `rate` a second from several concurrent
    clients, round robin over `intakes()`, until `limit` or `stop()`.

    A plain client does not retry: a failed POST counts as sent and not acknowledged. A
    `retrying` client behaves as the README asks of callers: it sends an Idempotency-Key
    and retries a 503 (or a POST that got no answer) with the same key until it gets a
    202, for up to `give_up_after` seconds."""

    def __init__(self, intakes: Callable[[], Sequence[str]], *, headers: Mapping[str, str],
                 prefix: str, rate: float, limit: int, posters: int = 6,
                 customers: Sequence[str] = CUSTOMERS, retrying: bool = False,
                 give_up_after: float = 60.0) -> None:
        """`headers`: a support platform's credential (`Pipeline.headers()`)."""
        self.prefix = prefix
        self._headers = dict(headers)
        self.answers: list[Answer] = []
        self._intakes = intakes
        self._rate = rate
        self._limit = limit
        self._posters = posters
        self._customers = customers
        self._retrying = retrying
        self._give_up_after = give_up_after
        self._next = 0
        self._started = 0.0
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._client: httpx.AsyncClient | None = None

    def owns(self, event: envelope.Event) -> bool:
        return self.owns_subject(str(event.data.get("subject", "")))

    def owns_subject(self, subject: str) -> bool:
        return subject.startswith(f"{self.prefix} ")

    def customer_of(self, subject: str) -> str:
        return self._customers[int(subject.rsplit(" ", 1)[1]) % len(self._customers)]

    @property
    def sent(self) -> int:
        """Tickets posted (a retried ticket once)."""
        return len({answer.subject for answer in self.answers})

    @property
    def acknowledged(self) -> dict[str, Answer]:
        return {a.ticket_id: a for a in self.answers if a.status == 202 and a.ticket_id}

    def statuses(self, posted_from: float, answered_by: float) -> Counter[int | None]:
        return Counter(a.status for a in self.answers
                       if a.posted_at >= posted_from and a.answered_at <= answered_by)

    def first_acknowledged_after(self, moment: float) -> float | None:
        """When the first ticket posted after `moment` was acknowledged."""
        return min((a.answered_at for a in self.answers
                    if a.status == 202 and a.posted_at >= moment), default=None)

    async def __aenter__(self) -> Load:
        self._client = httpx.AsyncClient(timeout=15.0)
        self._started = time.monotonic()
        self._tasks = [asyncio.create_task(self._post(), name=f"poster-{n}")
                       for n in range(self._posters)]
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    async def stop(self) -> None:
        """Stop posting and wait for the answers of the POSTs in flight (idempotent)."""
        self._stopping.set()
        try:
            async with asyncio.timeout(90):
                await asyncio.gather(*self._tasks)
        finally:
            if self._client is not None:
                await self._client.aclose()

    async def run_for(self, seconds: float) -> None:
        """Let the load run on for a while (returns early once the limit is reached)."""
        await asyncio.wait(self._tasks, timeout=seconds)

    async def _post(self) -> None:
        while not self._stopping.is_set() and self._next < self._limit:
            n, self._next = self._next, self._next + 1
            delay = self._started + n / self._rate - time.monotonic()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay)
                    return
            await self._post_ticket(n)

    async def _post_ticket(self, n: int) -> None:
        assert self._client is not None
        subject = f"{self.prefix} {n}"
        ticket = {"customer_id": self._customers[n % len(self._customers)],
                  "subject": subject, "body": "fault test", "channel": "api"}
        headers = {**self._headers,
                   **({"Idempotency-Key": f"{self.prefix}-{n}"} if self._retrying else {})}
        give_up = time.monotonic() + self._give_up_after
        while True:
            intakes = self._intakes()
            posted_at = time.monotonic()
            response: httpx.Response | None = None
            with contextlib.suppress(httpx.HTTPError):  # the intake is down
                response = await self._client.post(f"{intakes[n % len(intakes)]}/v1/tickets",
                                                   json=ticket, headers=headers)
            status = response.status_code if response is not None else None
            ticket_id = response.json()["ticket_id"] if response and status == 202 else None
            self.answers.append(Answer(subject, posted_at, time.monotonic(), status, ticket_id))
            if status == 202:
                return
            # A short pause, not Retry-After: the scenarios are timed in seconds.
            await asyncio.sleep(0.2 if not self._retrying else 0.5)
            if not self._retrying or status not in (None, 409, 503) \
                    or time.monotonic() > give_up:
                return


class Watch:
    """Follows topics with `read_committed` while a scenario runs: when each ticket of
    the scenario first became visible there, and how many copies of it."""

    def __init__(self, bootstrap: str, topics: Iterable[str],
                 owns: Callable[[envelope.Event], bool]) -> None:
        self.first_seen: dict[str, float] = {}
        self.copies: Counter[str] = Counter()
        self.subject_of: dict[str, str] = {}
        self._owns = owns
        self._consumer = AIOKafkaConsumer(
            *topics, bootstrap_servers=bootstrap, group_id=unique("fault-watch"),
            auto_offset_reset="earliest", enable_auto_commit=False,
            isolation_level="read_committed")
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Watch:
        await self._consumer.start()
        self._task = asyncio.create_task(self._follow(), name="fault-watch")
        return self

    async def __aexit__(self, *_: object) -> None:
        self._stopping = True
        try:
            if self._task is not None:
                async with asyncio.timeout(10):
                    await self._task
        finally:
            await self._consumer.stop()

    def seen_between(self, start: float, end: float) -> int:
        return sum(1 for at in self.first_seen.values() if start <= at <= end)

    async def wait_for(self, ticket_ids: Iterable[str], *, within: float) -> bool:
        wanted = set(ticket_ids)
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if wanted <= self.first_seen.keys():
                return True
            await asyncio.sleep(0.2)
        return False

    async def _follow(self) -> None:
        while not self._stopping:
            try:
                batch = await self._consumer.getmany(timeout_ms=200)
            except KafkaError:
                logger.warning("fault watch: fetch failed; retrying", exc_info=True)
                await asyncio.sleep(0.5)
                continue
            now = time.monotonic()
            for event, _record in readable(batch):
                if event.ticket_id and self._owns(event):
                    self.copies[event.ticket_id] += 1
                    self.first_seen.setdefault(event.ticket_id, now)
                    self.subject_of[event.ticket_id] = str(event.data.get("subject"))


def drain_time(load: Load, watch: Watch, since: float) -> float | None:
    """Seconds from `since` (the fault's end) until every ticket acknowledged by then was
    in a department queue; None if some never arrived."""
    due = [ticket_id for ticket_id, answer in load.acknowledged.items()
           if answer.answered_at <= since]
    if any(ticket_id not in watch.first_seen for ticket_id in due):
        return None
    return max([watch.first_seen[ticket_id] - since for ticket_id in due] + [0.0])


@dataclass(frozen=True)
class Outcome:
    """Tickets acknowledged over HTTP against copies found in the department queues."""

    sent: int
    acknowledged: frozenset[str]
    copies: Counter[str] = field(default_factory=Counter)
    subject_of: dict[str, str] = field(default_factory=dict)

    @property
    def delivered(self) -> set[str]:
        return set(self.acknowledged & self.copies.keys())

    @property
    def lost(self) -> set[str]:
        return set(self.acknowledged - self.copies.keys())

    @property
    def duplicated(self) -> set[str]:
        return {ticket_id for ticket_id, count in self.copies.items() if count > 1}

    @property
    def unacknowledged(self) -> set[str]:
        """Delivered although the POST got no 202 (503, or the intake died answering)."""
        return set(self.copies.keys() - self.acknowledged)

    @property
    def tickets_per_request(self) -> Counter[str]:
        """How many ticket ids each posted ticket (its subject) was delivered under."""
        return Counter(self.subject_of.values())


async def settle(bootstrap: str, load: Load, watch: Watch, *,
                 within: float = 90.0) -> Outcome:
    """Wait (bounded) until the watch saw every acknowledged ticket, then count them all
    afresh: a new `read_committed` reader over every lane, from the start."""
    acknowledged = load.acknowledged
    await watch.wait_for(acknowledged, within=within)
    watched = sum(count for ticket_id, count in watch.copies.items()
                  if load.owns_subject(watch.subject_of[ticket_id]))
    found = await read_topic(bootstrap, *all_lanes(), until=max(len(acknowledged), watched),
                             within=30.0, settle=1.0, keep=load.owns)
    return Outcome(sent=load.sent, acknowledged=frozenset(acknowledged),
                   copies=Counter(str(event.ticket_id) for event, _ in found),
                   subject_of={str(event.ticket_id): str(event.data["subject"])
                               for event, _ in found})
