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
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends

from services.core import access, auth, http, service_context


class OneAtATime(Exception):
    """The credential's earlier report still waits or is being computed."""


class ReportTurns:
    """At most `at_once` reports computed at a time, one per credential."""

    def __init__(self, at_once: int) -> None:
        self._computing = asyncio.Semaphore(at_once)
        self._holders: set[str] = set()

    @asynccontextmanager
    async def turn(self, holder: str) -> AsyncIterator[None]:
        """Wait for a turn, and hold it until the block ends; OneAtATime if `holder` (a
        credential, or a periodic job) already holds one or waits for one."""
        if holder in self._holders:
            raise OneAtATime(holder)
        self._holders.add(holder)
        try:
            async with self._computing:
                yield
        finally:
            self._holders.discard(holder)

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
    """A route's way to its service's turns (`ReportTurn`)."""

    def __init__(self, context: service_context.ServiceContext) -> None:
        self._turns = context.report_turns
        self._retry_after = str(context.settings.retry_after_seconds)

    @asynccontextmanager
    async def taken(self, principal: access.Principal) -> AsyncIterator[None]:
        """The block runs in the principal's turn; 429 `report_in_progress` while its
        credential's earlier report waits or is computed."""
        try:
            async with self._turns.turn(principal.credential_id):
                yield
        except OneAtATime:
            raise auth.Refused(
                429, "report_in_progress", "this credential's earlier report is still"
                " waiting or being computed; one report at a time per credential, retry"
                f" after {self._retry_after}s", {"Retry-After": self._retry_after}) from None


async def _turn(context: service_context.Context) -> Turn:
    return Turn(context)


ReportTurn = Annotated[Turn, Depends(_turn)]
# What a report route may answer besides its report (OpenAPI).
IN_PROGRESS: dict[int | str, dict[str, Any]] = {429: {
    "description": "`report_in_progress`: this credential's earlier report still waits or is"
                   " computed (one at a time); retry after Retry-After",
    "headers": http.RETRY_AFTER}}
