"""Turns at the reports over a window or over the whole customer base: the stats, the
service parity, the routing simulator, the segment rules' analysis and dry run, and the
recomputation of tiers.

Such a report is seconds of CPU, computed on the event loop its service's stage shares.
Each service computes at most `REPORTS_AT_ONCE` of them at a time; the others wait their
turn, in the order they came. A credential has one report at a time: asking for another
while its first still waits or is computed is refused (429, with Retry-After). So a
caller asking for long windows over and over holds at most one turn, and the others'
reports wait behind one of its reports, not behind all of them.

A route takes its turn in its body (`async with turn.taken(principal)`), once FastAPI
has checked the request: a request refused for its input or its credential never waits.
A caller that leaves while its report waits gives its place up: its report is not
computed, and its credential may ask again at once.

A run that a change sets off (a customer import's recomputation of tiers, `run_in_turn`)
is not a caller's report: it waits its turn, is never refused, and runs whether or not
its caller stays; a job's runs are computed one after the other, and a change made while
a run of the same job waits joins that run, so a job has at most one run waiting and one
computed however many changes set it off.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any, TypeVar

from fastapi import Depends, HTTPException, Request

from services.core import access, refusals, service_context

logger = logging.getLogger(__name__)


class OneAtATime(Exception):
    """The credential's earlier report still waits or is being computed."""


class CallerGone(Exception):
    """The caller left while its report waited for its turn."""


# How often a waiting report asks whether its caller is still there.
GONE_POLL_SECONDS = 1.0

Result = TypeVar("Result")


class ReportTurns:
    """At most `at_once` reports computed at a time, one per credential."""

    def __init__(self, at_once: int) -> None:
        self._computing = asyncio.Semaphore(at_once)
        self._holders: set[str] = set()
        self._next_run: dict[str, asyncio.Task[Any]] = {}  # a job's run waiting its turn
        self._one_run: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._running: set[asyncio.Task[Any]] = set()

    @asynccontextmanager
    async def turn(self, holder: str, gone: Callable[[], Awaitable[bool]] | None = None,
                   ) -> AsyncIterator[None]:
        """Wait for a turn, and hold it until the block ends; OneAtATime if `holder` (a
        credential, or a periodic job) already holds one or waits for one; CallerGone if
        `gone` says, while the report waits, that its caller left (its place given up)."""
        if holder in self._holders:
            raise OneAtATime(holder)
        self._holders.add(holder)
        try:
            await self._acquired(gone)
            try:
                yield
            finally:
                self._computing.release()
        finally:
            self._holders.discard(holder)

    async def _acquired(self, gone: Callable[[], Awaitable[bool]] | None) -> None:
        """A turn, in the order asked (the semaphore's queue, which every wait joins by
        a task of its own, so in the order they began). A report that waits asks `gone`
        now and then, and once more when its turn comes; one with no caller to ask (a
        job's run) just waits."""
        if not self._computing.locked():
            await self._computing.acquire()  # free: at once
            return
        waiting = asyncio.ensure_future(self._computing.acquire())
        poll = None if gone is None else GONE_POLL_SECONDS
        try:
            while not (await asyncio.wait({waiting}, timeout=poll))[0]:
                if gone is not None and await gone():
                    raise CallerGone
            if gone is not None and await gone():  # left since it last asked
                raise CallerGone
        except BaseException:
            # Left, or cancelled: the place given up. A turn come meanwhile goes back (a
            # wait cancelled once woken passes its turn on: asyncio's semaphore).
            if not waiting.cancel() and not waiting.cancelled() \
                    and waiting.exception() is None:
                self._computing.release()
            raise

    async def run_in_turn(self, job: str, run: Callable[[], Awaitable[Result]]) -> Result:
        """`run`, a run of `job` that a change sets off (a customer import's
        recomputation of tiers), in its turn: it waits as a report does and is never
        refused. A job's runs are computed one after the other, and a change made while a
        run of the job waits joins that run (which, starting later, covers it) rather
        than queue another: each job has at most one run waiting and one computed. The
        run goes on if its callers leave: what set it off is done."""
        waiting = self._next_run.get(job)
        if waiting is None:
            waiting = self._next_run[job] = asyncio.create_task(
                self._queued_run(job, run), name=f"job:{job}")
            self._running.add(waiting)  # held until done, whoever still waits for it
            waiting.add_done_callback(self._running.discard)
            waiting.add_done_callback(_log_failure)
        result: Result = await asyncio.shield(waiting)
        return result

    async def _queued_run(self, job: str, run: Callable[[], Awaitable[Result]]) -> Result:
        task = asyncio.current_task()
        try:
            async with self._one_run[job], self.turn(f"job:{job}"):
                self._leave_waiting(job, task)  # started: later changes need a new run
                return await run()
        finally:
            self._leave_waiting(job, task)

    def _leave_waiting(self, job: str, task: asyncio.Task[Any] | None) -> None:
        if self._next_run.get(job) is task:
            del self._next_run[job]

    async def stop(self) -> None:
        """At shutdown, before the store and publishers the runs use are closed: the runs
        that changes set off, waiting or computed, are cancelled as a crash would end
        them (the job's next run, periodic or set off by the next change, does their
        work), and waited for. Their callers still there, if any, get the cancellation."""
        running = list(self._running)
        if running:
            logger.info("job runs cancelled at shutdown",
                        extra={"jobs": sorted(task.get_name() for task in running)})
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)

    def periodic(self, job: str, run: Callable[[], Awaitable[object]],
                 ) -> Callable[[], Awaitable[None]]:
        """`run`, a periodic job's report, made to wait for its turn as callers' reports
        do (held as `job:<job>`: never a credential's id, which is hex)."""
        async def in_turn() -> None:
            async with self.turn(f"job:{job}"):
                await run()

        return in_turn

    @property
    def holders(self) -> int:
        """The reports computed or waiting for their turn."""
        return len(self._holders)


class Turn:
    """A route's way to its service's turns (`ReportTurn`), for its request."""

    def __init__(self, context: service_context.ServiceContext,
                 gone: Callable[[], Awaitable[bool]]) -> None:
        self._turns = context.report_turns
        self._retry_after = str(context.settings.retry_after_seconds)
        self._gone = gone

    async def run_in_turn(self, job: str, run: Callable[[], Awaitable[Result]]) -> Result:
        """`run`, a job the request sets off rather than a report its caller asked for
        (`ReportTurns.run_in_turn`): in its turn, never refused, joining the job's run
        that waits if one does, and run should the caller leave."""
        return await self._turns.run_in_turn(job, run)

    @asynccontextmanager
    async def taken(self, principal: access.Principal) -> AsyncIterator[None]:
        """The block runs in the principal's turn; 429 `report_in_progress` while its
        credential's earlier report waits or is computed; 499 `caller_gone` (the
        answer no one reads, as in the logs) if the caller left while it waited."""
        try:
            async with self._turns.turn(principal.credential_id, self._gone):
                yield
        except OneAtATime:
            raise refusals.Refused(
                429, refusals.REPORT_IN_PROGRESS, "this credential's earlier report is"
                " still waiting or being computed; one report at a time per credential,"
                f" retry after {self._retry_after}s", {"Retry-After": self._retry_after}) from None
        except CallerGone:
            logger.info("a report's caller left while it waited; its turn given up",
                        extra={"credential_id": principal.credential_id})
            raise HTTPException(CALLER_GONE, detail={
                "error": "caller_gone", "detail": "the caller left while its report"
                                                  " waited for its turn"}) from None


# The status of a request whose caller left before its answer (no client reads it).
CALLER_GONE = 499


async def _turn(request: Request, context: service_context.Context) -> Turn:
    return Turn(context, request.is_disconnected)


ReportTurn = Annotated[Turn, Depends(_turn)]
# What a report route may answer besides its report (OpenAPI; its Retry-After is
# documented with every 429, by http_docs).
IN_PROGRESS: dict[int | str, dict[str, Any]] = {429: {
    "description": f"`{refusals.REPORT_IN_PROGRESS}`: this credential's earlier report still"
                   " waits or is computed (one at a time); retry after Retry-After"}}


def _log_failure(task: asyncio.Task[Any]) -> None:
    """A job's run that failed, logged (every failure: its callers still there get the
    error too, but a run all of them left has no one else to tell)."""
    if not task.cancelled() and (error := task.exception()) is not None:
        logger.warning("a job's run in its report turn failed", exc_info=error,
                       extra={"job": task.get_name()})
