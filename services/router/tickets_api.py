"""A ticket's state and routing trace, transfers between departments, and priority
changes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, field_validator

from services.core import auth, http, request_bodies, tickets, topics
from services.router import bootstrap, lane_copies, service, service_clocks
from services.router.intake import HELD, NOT_FOUND, RATE_LIMITED, UNAVAILABLE, TicketId, refused

api = APIRouter(prefix="/v1/tickets", tags=["tickets"])


class Transfer(request_bodies.RequestBody):
    to_department: str = Field(pattern=topics.DEPARTMENT_NAME.pattern)
    reason: tickets.Reason = Field(
        description="Why (kept in the trace; no personal data, please)")
    from_department: str | None = Field(
        default=None, pattern=topics.DEPARTMENT_NAME.pattern,
        description="Your department, checked if given: one the routing table in force"
                    " lacks, holding no open ticket and (asked by an admin) never"
                    " holding this one, is refused 422, listing the table's departments")


class PriorityChange(request_bodies.RequestBody):
    priority: tickets.Priority = Field(description="1 is the most urgent")
    reason: tickets.Reason = Field(
        description="Why (kept in the trace; no personal data, please)")

    @field_validator("priority", mode="before")
    @classmethod
    def _a_json_integer(cls, value: object) -> object:
        # A JSON integer may be written 3 or 3.0; a string or a boolean is not one.
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError("must be a JSON integer, 1 to 5")
        return value


@api.get("/{ticket_id}", response_model=dict[str, Any],
         responses={**NOT_FOUND, 409: {"description": HELD}})
async def ticket_state(ticket_id: TicketId, router: bootstrap.RouterContext,
                       principal: auth.DepartmentOrAdmin) -> dict[str, Any] | JSONResponse:
    """The ticket's current department and state, and its whole routing trace (for the
    department that has it, or an admin). A ticket held as a dead letter is in no
    department yet: 409 `held` to an admin, 404 to a department."""
    row = await service.routed_ticket(ticket_id, principal=principal, routed=router.routed,
                                      held=router.held, now=datetime.now(UTC))
    if isinstance(row, service.Refused):
        return refused(row, router, "tickets")
    auth.ensure_may_act_for(principal, row.department)
    return {
        "ticket_id": row.ticket_id, "department": row.department, "segment": row.segment,
        "status": row.status, "priority": row.priority,
        "first_response_deadline": _iso(row.first_response_deadline),
        "first_response_at": _iso(row.first_response_at), "escalated": row.escalated,
        **_clocks(row.service_clocks), "trace": row.trace,
    }


class LaneCopy(BaseModel):
    ticket_id: str
    department: str
    state: lane_copies.CopyState = Field(description=(
        "`waiting`: the ticket waits there, as far as the router knows; `resolved`: it"
        " waits nowhere; `handed_on`: it joined another department's queue since;"
        " `queued_again`: it came back since, and its newer copy comes later in the"
        " department's lanes"))


@api.get("/{ticket_id}/lane-copy", response_model=LaneCopy, responses={404: {
    "description": f"`{lane_copies.COPY_NOT_KNOWN}`: the router knows no copy of the"
                   " ticket queued for `department` at `routed_at` (it may not have"
                   " recorded a hand-over being published yet)"}})
async def lane_copy(
    ticket_id: TicketId, router: bootstrap.RouterContext,
    principal: auth.DepartmentOrAdmin,
    department: Annotated[str, Query(pattern=topics.DEPARTMENT_NAME.pattern,
                                     description="The department whose lane has the copy")],
    routed_at: Annotated[http.Timestamp, Query(
        description="The copy's `routing.routed_at`, with its offset")],
) -> LaneCopy:
    """Whether a copy of the ticket on a department's lanes is still where the ticket
    waits: a lane keeps every copy written to it, also of a ticket resolved or handed on
    since (for the department whose lane it is, or an admin; about a copy queued for
    it)."""
    auth.ensure_may_act_for(principal, department)
    row = await router.routed.get(ticket_id)
    state = None if row is None else lane_copies.state_of_copy(
        status=row.status, trace=row.trace, department=department, routed_at=routed_at)
    if state is None:
        raise HTTPException(404, detail={
            "error": lane_copies.COPY_NOT_KNOWN,
            "detail": f"no copy of ticket {ticket_id!r} queued for {department} at"
                      f" {routed_at.isoformat()}, as far as the router knows"})
    return LaneCopy(ticket_id=ticket_id, department=department, state=state)


def _clocks(stored: dict[str, Any] | None) -> dict[str, Any]:
    """The ticket's deadlines (null: paused or answered), pause and escalation level."""
    if stored is None:
        return {}
    state = service_clocks.from_json(stored)
    return {"deadlines": {target: _iso(deadline)
                          for target, deadline in state.deadlines().items()},
            "paused": state.paused,
            "clocks": [{"target": clock.target, "instance": clock.instance,
                        "level": clock.level, "outcome": clock.outcome,
                        "business_seconds_spent": clock.spent_seconds,
                        "paused_seconds": clock.paused_seconds}
                       for clock in state.clocks]}


@api.post("/{ticket_id}/transfer", status_code=202, responses={
    **UNAVAILABLE, **RATE_LIMITED, **NOT_FOUND, 409: {
    "description": "`resolved` (the ticket is closed), `trace_full` (its trace at its"
                   " ceiling), `same_department` (it is already"
                   " there), `not_yours` (it is not with `from_department`),"
                   " `lanes_missing` (the router could not make `to_department`'s lanes:"
                   " the ticket stays where it is),"
                   " `handover_in_flight` (another transfer, an escalation or a priority"
                   f" change of it is being published: read it again); or {HELD}"}})
async def transfer(ticket_id: TicketId, body: Transfer, router: bootstrap.RouterContext,
                   principal: auth.RateLimitedDepartmentOrAdmin) -> Any:
    """Hand a ticket to another department: its clocks keep the time they spent and were
    paused, and count the rest in the new department's hours. A department hands over
    only tickets it has."""
    transferred = await service.transfer(
        ticket_id, to_department=body.to_department, reason=body.reason,
        from_department=body.from_department, principal=principal, routed=router.routed,
        publisher=router.publisher, table=router.table.current, queue_for=router.queue_for,
        held=router.held, now=datetime.now(UTC), claim_for=router.claim_hold)
    if isinstance(transferred, service.Refused):
        return refused(transferred, router, "transfer")
    return JSONResponse(status_code=202, content={"ticket_id": ticket_id,
                                                  "department": transferred.department,
                                                  "status": "transferred"})


@api.post("/{ticket_id}/priority", responses={**UNAVAILABLE, **RATE_LIMITED, **NOT_FOUND, 409: {
    "description": "`resolved` (the ticket is closed), `trace_full` (its trace holds the"
                   " most steps it takes: an admin's change only, and none at its"
                   " ceiling), `same_priority` (it"
                   " has it),"
                   " `handover_in_flight` (a transfer, an escalation or another priority"
                   f" change of it is being published: read it again); or {HELD}"}})
async def change_priority(ticket_id: TicketId, body: PriorityChange,
                          router: bootstrap.RouterContext,
                          principal: auth.RateLimitedDepartmentOrAdmin) -> Any:
    """Give a ticket another priority (the department that has it, or an admin): it takes
    the new priority's targets where the routing table's `priority_targets` gives them,
    and its clocks keep the time they spent and were paused. It stays where it is in its
    department's queue."""
    changed = await service.change_priority(
        ticket_id, priority=body.priority, reason=body.reason, principal=principal,
        routed=router.routed, publisher=router.publisher, table=router.table.current,
        held=router.held, now=datetime.now(UTC), claim_for=router.claim_hold,
        queue_for=router.queue_for)
    if isinstance(changed, service.Refused):
        return refused(changed, router, "priority")
    return {"ticket_id": ticket_id, "priority": changed.priority,
            "deadlines": changed.deadlines}


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.isoformat()
