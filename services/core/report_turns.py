"""Turns at the reports over a window: the stats, the service parity and the routing
simulator.

A report over a long window is seconds of CPU, computed on the event loop that its
service's stage shares (the metrics service's reports; the simulator in the router).
Each service computes at most `REPORTS_AT_ONCE` of them at a time; the others wait their
turn, in the order they came. A credential has one report at a time: asking for another
while its first is still waiting or computed is refused (429, with Retry-After). So a
caller asking for long windows over and over holds at most one turn, and the others'
reports wait behind one of its reports, not all of them.
"""

# No `from __future__ import annotations`: FastAPI reads `holding_a_turn`'s signature,
# whose dependency is a local of `in_turn`, from the evaluated annotations.
import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, Request

from services.core import access, auth, service_context


class OneAtATime(Exception):
    """The credential's earlier report is still waiting or being computed."""


class ReportTurns:
    """At most `at_once` reports computed at a time, one per credential."""

    def __init__(self, at_once: int) -> None:
        self._computing = asyncio.Semaphore(at_once)
        self._holders: set[str] = set()

    @asynccontextmanager
    async def turn(self, credential_id: str) -> AsyncIterator[None]:
        """Wait for a turn, and hold it until the block ends; OneAtATime if the
        credential already holds one or waits for one."""
        if credential_id in self._holders:
            raise OneAtATime(credential_id)
        self._holders.add(credential_id)
        try:
            async with self._computing:
                yield
        finally:
            self._holders.discard(credential_id)

    @property
    def holders(self) -> int:
        """The credentials whose report is computed or waits for its turn."""
        return len(self._holders)


def in_turn(*roles: access.Role) -> Callable[..., AsyncIterator[access.Principal]]:
    """A dependency admitting principals of these roles (as `auth.require`), which holds
    a report turn for its route: the route runs once the turn came."""
    admitted = auth.require(*roles)

    async def holding_a_turn(request: Request, principal: Annotated[
            access.Principal, Depends(admitted)]) -> AsyncIterator[access.Principal]:
        context = service_context.of(request.app)
        try:
            async with context.report_turns.turn(principal.credential_id):
                yield principal
        except OneAtATime:
            retry_after = str(context.settings.retry_after_seconds)
            raise auth.Refused(
                429, "report_in_progress", "this credential's earlier report is still being"
                " computed; one report at a time per credential, retry after"
                f" {retry_after}s", {"Retry-After": retry_after}) from None

    return holding_a_turn


# Reports an admin or a department asks for; reports for admins only.
DepartmentOrAdminReport = Annotated[access.Principal, Depends(
    in_turn(access.Role.DEPARTMENT, access.Role.ADMIN))]
ADMIN_REPORT: list[Any] = [Depends(in_turn(access.Role.ADMIN))]
