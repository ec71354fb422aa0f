"""A department a request names to act for (a report's `department`, a transfer's
`from_department`, `GET /v1/credentials/me?department=`): one the routing table in force
lacks, and that holds no open ticket (gone from the table, its lanes hold them until
they are handed on), is no department, refused in unknown_departments' words naming
the field before the credential's scope is judged, so that a department credential's
typo of its own name is told as a typo, not as another department's, and an admin's is
refused rather than recorded as an event's department."""

from __future__ import annotations

from services.core import access, unknown_departments
from services.router import ports, routing
from services.router.service.verdicts import Refusal, Refused


async def holds_open(routed: ports.Routed, department: str) -> bool:
    """Whether `department` holds open tickets (as the store says)."""
    return bool((await routed.open_tickets([department])).get(department))


async def unknown(department: str, *, in_table: routing.RoutingTable,
                  routed: ports.Routed) -> str | None:
    """Why `department` is no department to act for (unknown_departments), or None."""
    if not in_table.lacks(department) or await holds_open(routed, department):
        return None
    return unknown_departments.answer(department, in_table.departments)


async def refused(department: str | None, field: str, *, principal: access.Principal,
                  table: routing.RoutingTable, routed: ports.Routed) -> Refused | None:
    """422 naming `field` if `department`, given, is no department to act for. A
    department credential's own name is not looked up: it was when it was issued, and
    the store tells whether it may act (its scope, the ticket's state)."""
    if department is None or department == principal.subject:
        return None
    problem = await unknown(department, in_table=table, routed=routed)
    return None if problem is None else Refused(Refusal.INVALID, problem, field=field)
