"""A routing table an admin puts in force (`PUT /v1/routing-table`, or a rollback to an
earlier version): one that removes a department still holding open tickets is refused,
naming the departments and how many each holds, unless the admin confirms the removal; a
confirmed one is logged. The tickets stay where they are: the table no longer names their
department (they escalate to the fallback department at their breach:
escalation_targets)."""

from __future__ import annotations

import logging
from collections.abc import Collection
from typing import Any

from services.core import config_store
from services.core.live_config import LiveConfig, NotAdmitted
from services.router import ports, routing, table_changes

logger = logging.getLogger(__name__)


async def open_in_removed(current: routing.RoutingTable, candidate: routing.RoutingTable,
                          *, routed: ports.Routed) -> dict[str, int]:
    """Each department of `current` that `candidate` removes, and how many open tickets
    (lifecycle.OPEN) it holds now, none included."""
    removed = table_changes.departments_removed(current, candidate)
    held = await routed.open_tickets(removed) if removed else {}
    return {department: held.get(department, 0) for department in removed}


class RemovalCheck:
    """The routing table's admission (live_config.Admission), for an upload and a
    rollback alike: NotAdmitted when the candidate removes departments of the table in
    force that hold open tickets, unless `confirmed`; a confirmed removal is logged once
    in force."""

    def __init__(self, routed: ports.Routed, *, confirmed: bool) -> None:
        self._routed, self._confirmed = routed, confirmed
        self._held: dict[str, int] = {}

    async def __call__(self, in_force: routing.RoutingTable,
                       candidate: routing.RoutingTable) -> None:
        self._held = {department: count for department, count in (
            await open_in_removed(in_force, candidate, routed=self._routed)).items() if count}
        if self._held and not self._confirmed:
            raise NotAdmitted(held_by_removed(self._held))

    def put_in_force(self, version: config_store.ConfigVersion, *, changed: bool,
                     author: str) -> None:
        if changed and self._held:
            # Department names and counts, the version and the credential: no personal
            # data.
            logger.warning("routing table put in force removing departments that hold"
                           " open tickets, confirmed", extra={
                               "open_tickets": self._held, "version_id": version.version_id,
                               "author": author})


def held_by_removed(open_tickets: dict[str, int]) -> dict[str, Any]:
    """The refusal's answer: the departments and their counts, and what to do."""
    named = ", ".join(f"{department} ({count})"
                      for department, count in sorted(open_tickets.items()))
    return {"error": "departments_hold_open_tickets", "open_tickets": open_tickets,
            "detail": f"the table removes departments that hold open tickets: {named}."
                      " Nothing was changed. Transfer their tickets to departments the"
                      " table keeps first, or send it again with force=true to remove"
                      " them anyway (the tickets are not moved)"}


async def put_table_in_force(
        text: str, *, table: LiveConfig[routing.RoutingTable], routed: ports.Routed,
        author: str, comment: str, source: str, removal_confirmed: bool,
        if_in_force: Collection[int] | None = None,
) -> tuple[config_store.ConfigVersion, bool]:
    """Validate `text` and put it in force (live_config.LiveConfig.put_in_force, whose
    ConfigError, NotInForce and NotAdmitted come through: the last if it removes a
    department holding open tickets and the removal is not confirmed)."""
    return await table.put_in_force(
        text, source=source, author=author, comment=comment, by_request=True,
        if_in_force=if_in_force, admit=RemovalCheck(routed, confirmed=removal_confirmed))
