"""Why a use case on a routed ticket refused: the HTTP edge maps each to its status
(services/router/intake.py, `refused`)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from services.core import access, lifecycle
from services.router import intake_policy
from services.router.models import RoutedTicketRow


class Refusal(Enum):
    NOT_FOUND = "not_found"  # no routed ticket by this id
    FORBIDDEN = "forbidden"  # not the caller's ticket (another department's, platform's)
    CONFLICT = "conflict"  # the ticket's state does not allow it (already there...)
    INVALID = "invalid"  # a field of the request is wrong: `field` names it
    UNAVAILABLE = "unavailable"  # Kafka did not acknowledge: nothing happened, retry


@dataclass(frozen=True)
class Refused:
    refusal: Refusal
    detail: str = ""
    error: str = ""  # CONFLICT: which one, for the caller's code
    field: str = ""  # INVALID: the field, as `body.occurred_at`


def not_found(ticket_id: str) -> Refused:
    return Refused(Refusal.NOT_FOUND, f"no routed ticket {ticket_id!r}", "not_found")


UNAVAILABLE = Refused(Refusal.UNAVAILABLE)
HANDOVER_IN_FLIGHT = Refused(
    Refusal.CONFLICT, "the ticket changed since it was read, or a hand-over of it (a"
                      " transfer or an escalation) or a priority change is being published;"
                      " read it again, then retry", "handover_in_flight")
# lifecycle.py: a resolved ticket is closed.
RESOLVED = Refused(Refusal.CONFLICT, "the ticket is resolved: it takes no more reports,"
                                     " customer replies, transfers or priority changes; a"
                                     " new request from the customer is a new ticket",
                   "resolved")
TRACE_FULL = Refused(
    Refusal.CONFLICT, "the ticket's trace holds the most steps it takes (over"
                      f" {intake_policy.TRACE_STEPS_MAX:,}): it takes only"
                      f" {intake_policy.TAKEN_PAST_FULL}. A new request from the customer"
                      " is a new ticket", "trace_full")


def closed_to_report(row: RoutedTicketRow, report: str) -> Refused | None:
    """Why a ticket does not take `report` (a department's report, the customer's reply),
    if it does not: it is resolved, or its trace is full and the report is not one it
    takes then (intake_policy.takes_report)."""
    if not lifecycle.is_open(row.status):
        return RESOLVED
    return None if intake_policy.takes_report(row, report) else TRACE_FULL


def closed_to_transfer(row: RoutedTicketRow) -> Refused | None:
    """Why a ticket is not handed over, if it is not: resolved, or its trace at its
    ceiling (intake_policy.takes_transfer)."""
    if not lifecycle.is_open(row.status):
        return RESOLVED
    return None if intake_policy.takes_transfer(row) else TRACE_FULL


def closed_to_priority_change(row: RoutedTicketRow, principal: access.Principal
                              ) -> Refused | None:
    """Why a ticket takes no priority change from `principal`, if it does not: resolved,
    or its trace full and the change not an admin's, or at its ceiling
    (intake_policy.takes_priority_change)."""
    if not lifecycle.is_open(row.status):
        return RESOLVED
    return None if intake_policy.takes_priority_change(
        row, by_admin=principal.role is access.Role.ADMIN) else TRACE_FULL


ACTS_FOR_OWN = Refused(Refusal.FORBIDDEN,
                       "a department credential acts for its own department only")
# A request under an `Idempotency-Key` (a report's; a ticket's answers alike).
KEY_REUSED = Refused(Refusal.INVALID, "this key was used for a different request; use a new"
                                      " key per ticket or report",
                     field="header.Idempotency-Key")
KEY_IN_FLIGHT = Refused(Refusal.CONFLICT, "a request with this Idempotency-Key is being"
                                          " accepted; retry after Retry-After", "in_progress")
