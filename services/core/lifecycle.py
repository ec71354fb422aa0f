"""A routed ticket's life: its statuses, and what each department report means.

One definition for every service (the router's ticket state and escalation, the metrics
timeline and stats, the overflow prediction):

- statuses move forward only: routed, picked up, responded, resolved; once responded, a
  ticket goes back and forth between waiting on the customer (a department's report),
  the customer's reply (the platform's report) and responded, until it is resolved;
- waiting on the customer **pauses** the ticket's service-level clocks, the customer's
  reply **resumes** them (and starts a next-response clock once answered);
- a **first response** is the first `responded` *or* `resolved` report: a ticket solved
  without a separate reply has been answered (its first-response clock stops, it is not
  escalated, its target is met or missed by that time);
- a ticket is **open** until it is resolved; a resolved ticket takes no more reports,
  customer replies, transfers or priority changes (a new request is a new ticket);
- a ticket is **held** at a moment by the department it last came to by then (routed,
  escalated or transferred there); before its first arrival, by the first it came to
  (`held_at`): the department a report dated then, and a measure ended then, credit;
- a department's **backlog** is its open tickets awaiting a first response, but for
  those waiting on the customer: routed, picked up, or replied to by the customer before
  any response: the work queued ahead of a new ticket. A ticket paused before its first
  response waits on the customer, not on the department. `in_backlog` says it of one
  ticket, `backlog_where` of a store's rows: each store says once how its columns tell
  the three facts (tests/integration/test_lifecycle_agreement.py holds them together).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from enum import StrEnum
from typing import Any

from services.core.events import TicketEventType


class Status(StrEnum):
    ROUTED = "routed"
    PICKED_UP = "picked_up"
    RESPONDED = "responded"
    WAITING_ON_CUSTOMER = "waiting_on_customer"
    CUSTOMER_REPLIED = "customer_replied"
    RESOLVED = "resolved"


# The conversation: statuses of equal rank, the latest report wins among them.
CONVERSATION = (Status.RESPONDED, Status.WAITING_ON_CUSTOMER, Status.CUSTOMER_REPLIED)
ORDER = (Status.ROUTED, Status.PICKED_UP, CONVERSATION, Status.RESOLVED)
REPORTED: dict[TicketEventType, Status] = {
    TicketEventType.PICKED_UP: Status.PICKED_UP,
    TicketEventType.RESPONDED: Status.RESPONDED,
    TicketEventType.WAITING_ON_CUSTOMER: Status.WAITING_ON_CUSTOMER,
    TicketEventType.CUSTOMER_REPLIED: Status.CUSTOMER_REPLIED,
    TicketEventType.RESOLVED: Status.RESOLVED,
}
FIRST_RESPONSES = frozenset({TicketEventType.RESPONDED, TicketEventType.RESOLVED})
OPEN = (Status.ROUTED, Status.PICKED_UP, *CONVERSATION)
PAUSING = frozenset({TicketEventType.WAITING_ON_CUSTOMER})
RESUMING = frozenset({TicketEventType.CUSTOMER_REPLIED})


def counts_as_first_response(event_type: TicketEventType | str) -> bool:
    """Whether this report, if it is the ticket's first of its kind, answers the ticket."""
    return event_type in FIRST_RESPONSES


def reported_status(event_type: TicketEventType | str) -> Status | None:
    """The status a department report moves the ticket to (None: not a report)."""
    for reported, status in REPORTED.items():
        if reported == event_type:
            return status
    return None


def status_after(current: Status | str, reported: Status | str) -> Status:
    """The status once `reported` arrives: it only ever moves forward."""
    now, new = Status(current), Status(reported)
    if now is Status.RESOLVED:
        return now
    if new in CONVERSATION and now in CONVERSATION:
        return new
    return new if _rank(new) > _rank(now) else now


def _rank(status: Status) -> int:
    return next(rank for rank, entry in enumerate(ORDER)
                if entry == status or (isinstance(entry, tuple) and status in entry))


def pauses_clocks(event_type: TicketEventType | str) -> bool:
    """Waiting on the customer: the ticket's service-level clocks stop counting."""
    return event_type in PAUSING


def resumes_clocks(event_type: TicketEventType | str) -> bool:
    """The customer replied: paused clocks count again."""
    return event_type in RESUMING


def is_open(status: Status | str) -> bool:
    """Not resolved: the ticket still takes reports, transfers and priority changes."""
    return Status(status) in OPEN


def in_backlog(*, open_ticket: bool, answered: bool, waiting_on_customer: bool) -> bool:
    """Whether a ticket is in its department's backlog: open, awaiting a first response,
    not waiting on the customer."""
    return open_ticket and not answered and not waiting_on_customer


def backlog_where(*, open_ticket: Any, answered: Any, waiting_on_customer: Any
                  ) -> tuple[Any, ...]:
    """`in_backlog` as a query's conditions, each fact given as the store's condition on
    its columns (a SQLAlchemy expression): the stores count by the rule stated here."""
    return (open_ticket, ~answered, ~waiting_on_customer)


def held_at(arrivals: Iterable[tuple[datetime, str]], moment: datetime) -> str | None:
    """Which department held the ticket at `moment`, from its arrivals in departments
    (when, where to), in time order: the last it came to by then; before the first, the
    first; None if it came to none."""
    first = held = None
    for at, department in arrivals:
        if first is None:
            first = department
        if at > moment:
            break
        held = department
    return held if held is not None else first
