"""A routing table an admin puts in force (`PUT /v1/routing-table`): one that removes a
department still holding open tickets is refused, naming the departments and how many
each holds, unless the admin confirms the removal; a confirmed one is logged. The
tickets stay where they are: the table no longer names their department."""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass

from services.core import config_store
from services.core.live_config import LiveConfig
from services.router import ports, routing, table_changes

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class HeldByRemoved:
    """Refused: the candidate removes departments holding open tickets (their counts)."""

    open_tickets: dict[str, int]


async def open_in_removed(current: routing.RoutingTable, candidate: routing.RoutingTable,
                          *, routed: ports.Routed) -> dict[str, int]:
    """Each department of `current` that `candidate` removes, and how many open tickets
    (lifecycle.OPEN) it holds now, none included."""
    removed = table_changes.departments_removed(current, candidate)
    held = await routed.open_tickets(removed) if removed else {}
    return {department: held.get(department, 0) for department in removed}


class _Refused(Exception):
    def __init__(self, held: dict[str, int]) -> None:
        super().__init__(held)
        self.held = held


async def put_table_in_force(
        text: str, *, table: LiveConfig[routing.RoutingTable], routed: ports.Routed,
        author: str, comment: str, source: str, removal_confirmed: bool,
        if_in_force: Collection[int] | None = None,
) -> tuple[config_store.ConfigVersion, bool] | HeldByRemoved:
    """Validate `text` and put it in force (live_config.LiveConfig.put_in_force, whose
    ConfigError and NotInForce come through): (the version, whether anything changed),
    or HeldByRemoved, nothing changed, if it removes a department of the table in force
    here that holds open tickets and the removal is not confirmed."""
    held: dict[str, int] = {}

    async def admit(current: routing.RoutingTable, candidate: routing.RoutingTable) -> None:
        nonlocal held
        held = {department: count for department, count in (
            await open_in_removed(current, candidate, routed=routed)).items() if count}
        if held and not removal_confirmed:
            raise _Refused(held)

    try:
        version, changed = await table.put_in_force(
            text, source=source, author=author, comment=comment, by_request=True,
            if_in_force=if_in_force, admit=admit)
    except _Refused as refused:
        return HeldByRemoved(refused.held)
    if changed and held:
        # Department names and counts, the version and the credential: no personal data.
        logger.warning("routing table put in force removing departments that hold open"
                       " tickets, confirmed", extra={
                           "open_tickets": held, "version_id": version.version_id,
                           "author": author})
    return version, changed
