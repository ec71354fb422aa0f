"""A ticket's state and routing trace, transfers between departments, and priority
changes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator

from services.core import auth, events, http, kafka, tickets, topics
from services.router import dispatch, priority, service_clocks
from services.router.intake import UNAVAILABLE, PublisherDep, TicketId, unavailable
from services.router.store import RoutedTickets

api = APIRouter(prefix="/v1/tickets", tags=["tickets"])


async def get_routed(request: Request) -> RoutedTickets:
    routed: RoutedTickets = request.app.state.routed
    return routed


Routed = Annotated[RoutedTickets, Depends(get_routed)]


class Transfer(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to_department: str = Field(pattern=topics.DEPARTMENT_NAME.pattern)
    reason: str = Field(min_length=1, max_length=200,
                        description="Why (kept in the trace; no personal data, please)")
    from_department: str | None = Field(default=None, pattern=topics.DEPARTMENT_NAME.pattern,
                                        description="Your department, checked if given")


class PriorityChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    priority: int = Field(ge=priority.HIGHEST, le=priority.LOWEST,
                          description="1 is the most urgent")
    reason: str = Field(min_length=1, max_length=200,
                        description="Why (kept in the trace; no personal data, please)")

    @field_validator("priority", mode="before")
    @classmethod
    def _a_json_integer(cls, value: object) -> object:
        # A JSON integer may be written 3 or 3.0; a string or a boolean is not one.
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError("must be a JSON integer, 1 to 5")
        return value


def _not_found(ticket_id: str) -> HTTPException:
    return HTTPException(404, detail={"error": "not_found",
                                      "detail": f"no routed ticket {ticket_id!r}"})


@api.get("/{ticket_id}")
async def ticket_state(ticket_id: TicketId, routed: Routed,
                       principal: auth.DepartmentOrAdmin) -> dict[str, Any]:
    """The ticket's current department and state, and its whole routing trace (for the
    department that has it, or an admin)."""
    row = await routed.get(ticket_id)
    if row is None:
        raise _not_found(ticket_id)
    auth.ensure_may_act_for(principal, row.department)
    return {
        "ticket_id": row.ticket_id, "department": row.department, "segment": row.segment,
        "status": row.status, "priority": row.priority,
        "first_response_deadline": _iso(row.first_response_deadline),
        "first_response_at": _iso(row.first_response_at), "escalated": row.escalated,
        **_clocks(row.service_clocks), "trace": row.trace,
    }


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


@api.post("/{ticket_id}/transfer", status_code=202, responses=UNAVAILABLE)
async def transfer(ticket_id: TicketId, body: Transfer, routed: Routed, request: Request,
                   publisher: PublisherDep, principal: auth.DepartmentOrAdmin) -> Any:
    """Hand a ticket to another department: its clocks keep the time they spent and were
    paused, and count the rest in the new department's hours. A department hands over
    only tickets it has."""
    row = await routed.get(ticket_id)
    if row is None:
        raise _not_found(ticket_id)
    auth.ensure_may_act_for(principal, row.department)
    if body.from_department and body.from_department != row.department:
        raise HTTPException(409, detail={
            "error": "not_yours", "detail": f"the ticket is with {row.department!r}"})
    if body.to_department not in request.app.state.routing_table.current.departments:
        raise http.InvalidField("body.to_department",
                                "not a department of the routing table in force")
    if body.to_department == row.department:
        raise HTTPException(409, detail={"error": "same_department",
                                         "detail": "the ticket is already there"})
    now = datetime.now(UTC)
    table = request.app.state.routing_table.current
    new_calendar = table.policy(body.to_department).calendar

    def move(clocks: service_clocks.TicketClocks,
             department: str) -> service_clocks.TicketClocks:
        # What the clocks spent stays; the rest counts in the new department's hours.
        return service_clocks.handed_over(clocks, now, table.policy(department).calendar,
                                          new_calendar)

    details = {} if row.service_clocks is None else {"deadlines": move(
        service_clocks.from_json(row.service_clocks), row.department).deadlines()}
    step = {"at": now.isoformat(), "step": "transferred", "from": row.department,
            "to": body.to_department, "reason": body.reason,
            **{name: {target: _iso(deadline) for target, deadline in deadlines.items()}
               for name, deadlines in details.items()}}
    ticket, outputs = dispatch.redispatch(
        tickets.RoutedTicket.model_validate(row.payload), department=body.to_department,
        reason="transfer", from_department=row.department,
        event_type=events.TicketEventType.TRANSFERRED, now=now,
        correlation_id=row.correlation_id or ticket_id,  # None: routed before 0011
        queue_for=request.app.state.queue_for, details=details)
    try:
        await publisher.publish(outputs)
    except kafka.PublishFailed:
        return unavailable(request, "transfer")
    await routed.record_handover(ticket_id, department=body.to_department, steps=[step],
                                 ticket=ticket, now=now, move_clocks=move)
    return JSONResponse(status_code=202, content={"ticket_id": ticket_id,
                                                  "department": body.to_department,
                                                  "status": "transferred"})


@api.post("/{ticket_id}/priority", responses=UNAVAILABLE)
async def change_priority(ticket_id: TicketId, body: PriorityChange, routed: Routed,
                          request: Request, publisher: PublisherDep,
                          principal: auth.DepartmentOrAdmin) -> Any:
    """Give a ticket another priority (the department that has it, or an admin): it takes
    the new priority's targets where the routing table's `priority_targets` gives them,
    and its clocks keep the time they spent and were paused. It stays where it is in its
    department's queue."""
    row = await routed.get(ticket_id)
    if row is None:
        raise _not_found(ticket_id)
    auth.ensure_may_act_for(principal, row.department)
    if row.priority == body.priority:
        raise HTTPException(409, detail={"error": "same_priority",
                                         "detail": f"the ticket has priority {row.priority}"})
    now = datetime.now(UTC)
    table = request.app.state.routing_table.current
    given = table.priority_targets.get(body.priority)

    def move(clocks: service_clocks.TicketClocks,
             department: str) -> service_clocks.TicketClocks:
        return service_clocks.reprioritised(clocks, now, table.policy(department).calendar,
                                            given)

    after = None if row.service_clocks is None else move(
        service_clocks.from_json(row.service_clocks), row.department)
    shown = None if after is None else {target: _iso(deadline)
                                        for target, deadline in after.deadlines().items()}
    lifecycle = events.TicketEvent(
        ticket_id=ticket_id, type=events.TicketEventType.PRIORITY_CHANGED, occurred_at=now,
        department=row.department, segment=row.segment, priority=body.priority,
        deadlines=None if after is None else after.deadlines(),
        paused=None if after is None else after.paused)
    try:
        await publisher.publish([kafka.Output(topics.EVENTS, ticket_id, events.as_envelope(
            lifecycle, row.correlation_id or ticket_id, dispatch.SOURCE))])
    except kafka.PublishFailed:
        return unavailable(request, "priority")
    step = {"at": now.isoformat(), "step": "priority_changed", "from": row.priority,
            "to": body.priority, "reason": body.reason,
            **({} if shown is None else {"deadlines": shown})}
    await routed.record_priority_change(ticket_id, priority=body.priority, step=step,
                                        move_clocks=move)
    return {"ticket_id": ticket_id, "priority": body.priority, "deadlines": shown}


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.isoformat()
