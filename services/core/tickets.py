"""The ticket as it travels the pipeline, and the stages' additions to it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

AttributeValue = str | int | float | bool


class Ticket(BaseModel):
    """A customer's request, as accepted by the intake."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    ticket_id: str
    customer_id: str
    subject: str
    body: str
    channel: str
    kind: str | None = None
    language: str | None = None
    attributes: dict[str, AttributeValue] = Field(default_factory=dict)
    received_at: datetime


# The segment of a ticket whose customer could not be looked up (the customer store was
# down past its grace period): routed like any segment without a route, to the fallback
# department, unless the routing table routes it.
DEGRADED_SEGMENT = "unsegmented"


class Segmentation(BaseModel):
    """Which customer group a ticket belongs to, and why."""

    model_config = ConfigDict(frozen=True)

    segment: str
    rule: str
    rules_version: str
    customer_known: bool
    tier: str
    decided_by: dict[str, Any] = Field(default_factory=dict)
    degraded: str | None = None  # why the segment is not the customer's (store down)


class SegmentedTicket(Ticket):
    segmentation: Segmentation


class Routing(BaseModel):
    """Which department a ticket went to, and why: the routing part of its trace."""

    model_config = ConfigDict(frozen=True)

    department: str
    # route, fallback, refinement, overflow, after_hours; escalation or transfer later
    reason: str
    entry: str | None = None  # the route's segment or the refinement's name
    table_version: str
    routed_at: datetime
    queue: str | None = None  # the lane topic it joined
    priority: int | None = None  # 1 is the most urgent
    first_response_target_seconds: float | None = None
    first_response_deadline: datetime | None = None
    overflowed_from: str | None = None
    trace: list[str] = Field(default_factory=list)


class RoutedTicket(SegmentedTicket):
    routing: Routing
