"""A department a request names to act for (a report's `department`, a transfer's
`from_department`, `GET /v1/credentials/me?department=`): one the routing table in force
lacks, that holds no open ticket (gone from the table, its lanes hold them until they
are handed on) and, asked by an admin, that the ticket asked about never came to (an
admin's report dated while it held the ticket), is no department, refused in
unknown_departments' words naming the field before the credential's scope is judged, so
that a department credential's typo of its own name is told as a typo, not as another
department's, and an admin's is refused rather than recorded as an event's department.
A department that an admin's report names is the one holding the ticket at the report's
date, or refused (`not_holding`), once the ticket is found and the report dated."""

from __future__ import annotations

from datetime import datetime

from services.core import access, unknown_departments
from services.router import intake_policy, ports, routing
from services.router.models import RoutedTicketRow
from services.router.service.verdicts import Refusal, Refused


async def holds_open(routed: ports.Routed, department: str) -> bool:
    """Whether `department` holds open tickets (as the store says)."""
    return bool((await routed.open_tickets([department])).get(department))


def came_to_departments(row: RoutedTicketRow) -> list[str]:
    """The departments whose queue the ticket was ever in (its trace), in the order it
    came to them first, the one holding it among them."""
    joined = [to for _at, to in intake_policy.queue_joins(row.trace)]
    return list(dict.fromkeys([*joined, row.department]))


async def came_to(routed: ports.Routed, ticket_id: str, department: str) -> bool:
    """Whether the ticket `ticket_id` was ever in `department`'s queue (its trace)."""
    row = await routed.get(ticket_id)
    return row is not None and department in came_to_departments(row)


def not_holding(row: RoutedTicketRow, department: str, dated: datetime,
                field: str) -> Refused | None:
    """422 naming `field` if an admin's report dated `dated` names as its reporter a
    department other than the one holding the ticket then (intake_policy.held_at, as the
    store credits the report and the metrics service a measure ended then): recorded as
    the event's department, it would say one department answered while another held
    the ticket, and the router and the metrics would credit the other."""
    holder = intake_policy.held_at(row.trace, dated) or row.department
    if department == holder:
        return None
    held = came_to_departments(row)
    if department not in held:
        return Refused(Refusal.INVALID, f"ticket {row.ticket_id!r} never came to"
                                        f" {department!r}; an admin reports for a department"
                                        f" that held it: {', '.join(held)}", field=field)
    return Refused(Refusal.INVALID, f"ticket {row.ticket_id!r} was with {holder!r} at"
                                    f" {dated.isoformat()}, not {department!r}; an admin"
                                    f" reports for the department holding it at the"
                                    f" report's date: name {holder!r}, or date it"
                                    f" (occurred_at) while {department!r} held it",
                   field=field)


async def unknown(department: str, *, in_table: routing.RoutingTable,
                  routed: ports.Routed, ticket_id: str | None = None) -> str | None:
    """Why `department` is no department to act for (unknown_departments) on the ticket
    `ticket_id`, if one is asked about, or None."""
    if not in_table.lacks(department) or await holds_open(routed, department):
        return None
    if ticket_id is not None and await came_to(routed, ticket_id, department):
        return None
    return unknown_departments.answer(department, in_table.departments)


async def refused(department: str | None, field: str, *, principal: access.Principal,
                  table: routing.RoutingTable, routed: ports.Routed,
                  ticket_id: str | None = None) -> Refused | None:
    """422 naming `field` if `department`, given, is no department to act for (on the
    ticket `ticket_id`, if one is asked about, by an admin). A
    department credential's own name is not looked up: it was when it was issued, and
    the store tells whether it may act (its scope, the ticket's state)."""
    if department is None or department == principal.subject:
        return None
    # The ticket's history is an admin's to consult: another department's credential
    # would learn from the answer which departments held a ticket it never held.
    history = ticket_id if principal.role is access.Role.ADMIN else None
    problem = await unknown(department, in_table=table, routed=routed, ticket_id=history)
    return None if problem is None else Refused(Refusal.INVALID, problem, field=field)
