"""Leases in the SQL store, so that a periodic job that must not run twice (escalation,
the tier recompute, the retention purge) runs on one instance of the fleet at a time.

A lease is a row (`leases`: name, holder, acquired_at, expires_at). Taking or renewing it
is one statement, atomic on SQLite and PostgreSQL alike: insert the row, or update it
where it has expired or is already ours. The statement answers with the row only when we
hold the lease afterwards. Times are the instances' own clocks (UTC): keep them in sync
(NTP), within a fraction of the lease's duration.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import case, delete, or_
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.core import background, db
from services.core.fleet_models import LeaseRow

logger = logging.getLogger(__name__)

# A lease outlives this many intervals of its job: a holder that misses a renewal or two
# (a slow run, a pause) keeps it; one that died passes it on after this many intervals.
INTERVALS_PER_LEASE = 3
# And it lasts at least this long: a job polled every second (webhook delivery) would
# otherwise count its lease lost whenever the store, busy under load, took two seconds to
# renew it, and stop and start its work over and over. A dead holder's job waits as long
# for another instance.
MIN_LEASE_SECONDS = 30.0


def lease_for(seconds: float) -> timedelta:
    """How long the lease of a job run every `seconds` lasts from each renewal."""
    return timedelta(seconds=max(seconds * INTERVALS_PER_LEASE, MIN_LEASE_SECONDS))


def holder_id(service: str, instance_id: str) -> str:
    """This process's name as a lease holder: unique even for two processes started with
    the same instance id (a restart, a misconfigured replica)."""
    return f"{service}-{instance_id}-{os.getpid()}-{uuid.uuid4().hex[:12]}"


class Leases:
    """Named leases held by one process (`holder`)."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], *, holder: str) -> None:
        self._sessions = sessions
        self.holder = holder

    async def acquire(self, name: str, *, duration: timedelta,
                      now: datetime | None = None) -> bool:
        """Take or renew the lease `name` until `now + duration`; whether we hold it."""
        now = now or datetime.now(UTC)
        async with self._sessions() as session, session.begin():
            insert = db.insert_on_conflict(session.get_bind().dialect.name)
            statement = insert(LeaseRow).values(
                name=name, holder=self.holder, acquired_at=now, expires_at=now + duration)
            taken = await session.execute(statement.on_conflict_do_update(
                index_elements=[LeaseRow.name],
                set_={"holder": statement.excluded.holder,
                      # A renewal keeps the moment the lease was first taken.
                      "acquired_at": case((LeaseRow.holder == self.holder,
                                           LeaseRow.acquired_at),
                                          else_=statement.excluded.acquired_at),
                      "expires_at": statement.excluded.expires_at},
                where=or_(LeaseRow.holder == self.holder, LeaseRow.expires_at <= now),
            ).returning(LeaseRow.holder))
            return taken.first() is not None

    async def release(self, name: str) -> None:
        """Give the lease up (at shutdown), so another instance need not wait it out."""
        async with self._sessions() as session, session.begin():
            await session.execute(delete(LeaseRow).where(LeaseRow.name == name,
                                                         LeaseRow.holder == self.holder))

    async def holder_of(self, name: str) -> str | None:
        """Who holds the lease now, expired or not (for tests and operators)."""
        async with self._sessions() as session:
            row = await session.get(LeaseRow, name)
            return row.holder if row else None


async def every_while_holding(leases: Leases, name: str, seconds: float,
                              action: Callable[[], Awaitable[object]],
                              stop: asyncio.Event, *,
                              on_lost: Callable[[], Awaitable[object]] | None = None) -> None:
    """Run `action` every `seconds` until `stop`, on this instance only while it holds the
    lease `name` (renewed before each run, and every `seconds` while a run lasts, for
    `lease_for(seconds)`); the lease is given up when the job stops. `on_lost`
    runs whenever this instance stops holding the lease: found taken (a renewal came too
    late), not renewed (the store is away: it expires soon), or given up at the end,
    before it goes. What `action` left running must then stop, since another instance
    may take the job at once; a run still going is cancelled before (`_run_holding`)."""
    lease = _Held(leases, name, seconds, lease_for(seconds))
    holding = False

    async def stand_down() -> None:
        nonlocal holding
        holding = False
        if on_lost is not None:
            await on_lost()

    async def renew() -> bool:
        """Take or renew the lease; whether this instance holds it now, to run the job.
        Held, it is renewed as during a run (`_Held.renewed`): a renewal the store fails
        (a blip, a lock held under load) skips a run and keeps the lease while another
        try can come before its deadline; past that, or found taken, this instance
        stands down."""
        nonlocal holding
        if not holding:
            holding = await lease.taken()
            if holding:
                logger.info("lease taken", extra={"lease": name, "holder": leases.holder})
            return holding
        outcome = await lease.renewed()
        if outcome == RENEWED:
            return True
        if outcome == FAILED and time.monotonic() + seconds < lease.deadline:
            return False  # tried again next interval, in time
        logger.warning("lease lost", extra={"lease": name, "lease_lost": outcome})
        await stand_down()
        return False

    async def run_if_holding() -> None:
        if await renew():
            await _run_holding(lease, action, stop=stop, stand_down=stand_down)

    try:
        await background.every(seconds, run_if_holding, stop)
    finally:
        if holding:
            await stand_down()
            try:
                await leases.release(name)
            except Exception:  # the store is away: the lease expires by itself
                logger.warning("lease not released", extra={"lease": name})


# What became of a renewal (`_Held.renewed`).
RENEWED, FAILED, TAKEN, LATE = "renewed", "failed", "taken", "not renewed in time"


@dataclass
class _Held:
    """The lease of a periodic job, as this instance takes and renews it: when it expires
    as last taken or renewed here (`expires`, on the monotonic clock, never later than
    the store's), and the deadline what holds it must stop by, half an interval before."""

    leases: Leases
    name: str
    seconds: float  # the job's interval
    duration: timedelta
    expires: float = 0.0

    @property
    def deadline(self) -> float:
        return self.expires - self.seconds / 2

    async def taken(self) -> bool:
        """Whether this instance took the lease (the store's errors raised)."""
        attempt = time.monotonic()
        held = await self.leases.acquire(self.name, duration=self.duration)
        if held:
            self.expires = attempt + self.duration.total_seconds()
        return held

    async def renewed(self) -> str:
        """The lease held renewed: RENEWED, or what became of it: FAILED (the store's
        error, logged), TAKEN, or LATE. A renewal still going at the deadline is LATE, and
        is left to finish rather than cancelled: a store call cut mid-statement can leave
        SQLite's write lock held by a connection nobody ends; finishing late, it only
        lengthens the lease."""
        attempt = time.monotonic()
        renewal = asyncio.ensure_future(self.leases.acquire(self.name,
                                                            duration=self.duration))
        renewal.add_done_callback(background.retrieved)
        if not (await asyncio.wait({renewal},
                                   timeout=max(self.deadline - attempt, 0.0)))[0]:
            return LATE
        if (error := renewal.exception()) is not None:
            logger.warning("lease not renewed", exc_info=error, extra={"lease": self.name})
            return FAILED
        if not renewal.result():
            return TAKEN
        self.expires = attempt + self.duration.total_seconds()
        return RENEWED


async def _run_holding(lease: _Held, action: Callable[[], Awaitable[object]], *,
                       stop: asyncio.Event, stand_down: Callable[[], Awaitable[None]]) -> None:
    """`action`, its lease renewed every interval while it runs (a run may wait for its
    turn, or have much to do), so that a run longer than the lease keeps it. Should the
    lease be found taken, or not be renewed by its deadline (a store that fails a renewal
    or two meanwhile does not cut the run short), the run is cancelled, as a crash would
    end it, and only then does this instance `stand_down`. A run going when the job stops
    is cancelled too: shutdown does not wait for a long one."""
    run = asyncio.ensure_future(action())
    run.add_done_callback(background.retrieved)  # read below, unless cut short
    stopping = asyncio.ensure_future(stop.wait())
    lost = None
    try:
        while lost is None and not stop.is_set():
            left = lease.deadline - time.monotonic()  # before the run must stop
            if left <= 0:
                lost = LATE
                break
            done, _ = await asyncio.wait({run, stopping}, timeout=min(lease.seconds, left),
                                         return_when=asyncio.FIRST_COMPLETED)
            if run in done or stop.is_set():
                break
            outcome = await lease.renewed()
            lost = outcome if outcome in (TAKEN, LATE) else None  # else: tried again
    finally:
        stopping.cancel()
        cut_short = not run.done()
        if cut_short:  # the lease lost, the job stopping, or this task cancelled
            await _cancelled(run, lease.name)
    if lost is not None:
        logger.warning("run cancelled: its lease was lost" if cut_short
                       else "lease lost as its run ended",
                       extra={"lease": lease.name, "lease_lost": lost})
        await stand_down()
    if not run.cancelled():
        run.result()  # its failure, as a run's that was awaited


# How long a run cancelled for its lease is waited for: an action that does not end when
# cancelled (a bug) is logged and left, rather than hold its job for good.
CANCELLED_RUN_SECONDS = 10.0


async def _cancelled(run: asyncio.Future[object], name: str) -> None:
    run.cancel()
    if not (await asyncio.wait({run}, timeout=CANCELLED_RUN_SECONDS))[0]:
        logger.error("a run cancelled for its lease has not ended", extra={"lease": name})
