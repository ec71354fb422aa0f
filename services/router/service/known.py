"""What a caller is told of a ticket id: the routed ticket, that it is held as a dead
letter, or that no such ticket is known. Written once for every use case on a ticket (a
report, a customer's reply, a transfer, a priority change) and its state's read."""

from __future__ import annotations

from datetime import datetime

from services.core import access
from services.router import held_tickets, ports
from services.router.models import RoutedTicketRow
from services.router.service import verdicts
from services.router.service.verdicts import Refused


async def routed_ticket(ticket_id: str, *, principal: access.Principal,
                        routed: ports.Routed, held: ports.Held,
                        now: datetime) -> RoutedTicketRow | Refused:
    """The routed ticket by `ticket_id`, where `principal` may know of it (a platform, of
    the tickets it posted only); else why not. A ticket a stage dead-lettered, and no
    replay routed since, is told held (verdicts.held) to whom held_tickets.may_be_told
    says, in an operator's words to an admin. Any other is answered as an id of no
    ticket: to a platform, as verdicts.not_routed says (it has an id from its 202 before
    the ticket is routed), to others, not found. Whether a department may act on a
    routed ticket is its caller's to judge (verdicts.acts_for_own)."""
    platform = principal.role is access.Role.PLATFORM
    row = await routed.get(ticket_id)
    if row is not None:
        if not platform or row.platform == principal.subject:
            return row
    else:
        holding = await held.get(ticket_id)
        if holding is not None and held_tickets.may_be_told(holding, principal):
            return verdicts.held(holding, operator=principal.role is access.Role.ADMIN)
    return verdicts.not_routed(ticket_id, now=now) if platform \
        else verdicts.not_found(ticket_id)
