"""A steady load of tickets posted over HTTP to the intake, and what each POST was
answered.

Times are `time.monotonic()` seconds throughout (the event loop's clock too)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import httpx

from services.core import envelope

# Demo customers (known to the seeded store) and two the store does not know.
CUSTOMERS = ("gov-ministry-1", "org-acme-1", "ind-vip-1", "ind-rising-1", "ind-loyal-1",
             "ind-new-1", "stranger-1", "stranger-2")


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
