"""Why a use case on a routed ticket refused: the HTTP edge maps each to its status
(services/router/intake.py, `refused`; `NOT_ROUTED_YET`: platform_reports.py)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from typing import Any

from services.core import access, lifecycle, moments, refusal_outcomes, topics
from services.router import (
    clock_notices,
    clocks,
    held_tickets,
    intake_policy,
    missing_lanes,
    ticket_ids,
)
from services.router.models import RoutedTicketRow


class Refusal(Enum):
    NOT_FOUND = "not_found"  # no routed ticket by this id
    NOT_ROUTED_YET = "not_routed_yet"  # none yet, by an id the intake issued lately: retry
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


# How long after its issue a ticket may still be on its way to the router: as long as
# Kafka keeps it as posted (the segmenter or the router may be far behind, or waiting out
# an outage). One not routed by then is a dead letter, or lost.
ON_ITS_WAY_FOR = timedelta(days=topics.RETENTION_DAYS[topics.INCOMING])


def not_routed(ticket_id: str, *, now: datetime) -> Refused:
    """The answer on `ticket_id`, which the router routed no ticket by (or none the
    caller may know of), to a platform, which has a ticket's id from its 202 before the
    ticket is routed: not routed yet, to retry later, if the intake issued that id
    within ON_ITS_WAY_FOR (up to a clock's skew ahead: another instance issued it); else
    not found. Decided by the id alone, so it tells nothing of another platform's
    tickets (ticket_ids: any id in the intake's form is answered so)."""
    issued = ticket_ids.issued_at(ticket_id)
    if issued is None or not now - ON_ITS_WAY_FOR <= issued <= now + moments.CLOCK_SKEW:
        return not_found(ticket_id)
    return Refused(Refusal.NOT_ROUTED_YET,
                   f"ticket {ticket_id!r} is not routed yet: the intake issued its id at"
                   f" {issued.isoformat()}, and a ticket it accepted is on its way to its"
                   " department; retry after Retry-After", "not_routed_yet")


def held(ticket: held_tickets.Held, *, operator: bool) -> Refused:
    """The answer on a ticket a stage dead-lettered and no replay routed since: no retry
    routes it, an operator's replay does (no Retry-After)."""
    return Refused(Refusal.CONFLICT, held_tickets.told(ticket, operator=operator),
                   held_tickets.HELD)


UNAVAILABLE = Refused(Refusal.UNAVAILABLE)


def lanes_missing(missing: missing_lanes.LanesMissing, *, held_by: str) -> Refused:
    """A hand-over to a department whose lanes the router could not make: refused, the
    ticket left with the department holding it, rather than held up as for a broker down
    (a 503 after PRODUCE_TIMEOUT_SECONDS, however often retried)."""
    return Refused(Refusal.CONFLICT,
                   f"department {missing.department}'s lanes do not exist and the router"
                   f" could not make them ({', '.join(missing.lanes)}): the ticket stays"
                   f" with {held_by!r}; transfer it there once they exist (an operator's"
                   " `routing topics`), or to another department", "lanes_missing")
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


def acts_for_own(row: RoutedTicketRow, principal: access.Principal) -> Refused:
    """Why `principal`, which may not act for the department holding the ticket, is
    refused a transfer, a priority change or a report on it: ACTS_FOR_OWN, or, where the
    ticket was escalated out of the principal's department to where it is
    (escalated_from), escalated_away_before, which says so."""
    away = escalated_from(row, principal)
    if away is None:
        return ACTS_FOR_OWN
    escalated_at, escalated = away
    return escalated_away_before(escalated, escalated_at=escalated_at,
                                 department=row.department)


def escalated_away(escalated: Sequence[clock_notices.Escalated], *, asked_at: datetime,
                   department: str) -> Refused:
    """A department's transfer or priority change whose request first sent the notices
    its ticket owed (the clock watch had not come to them), which escalated the ticket
    out of that department (now with `department`): its credential no longer acts for
    the ticket, as the request would have found had the watch run first
    (`escalated_away_before`, 403 alike), but told which deadline passed, that this
    request sent its breach, and where the ticket went, so that it is not read as a
    credential's fault."""
    return Refused(
        Refusal.FORBIDDEN,
        f"this request, at {asked_at.isoformat()}, first sent the breach the ticket owed"
        f" (the clock watch had not sent it yet): {_passed(escalated)}. The ticket is with"
        f" {department!r} now, and a department credential acts for its own department"
        f" only: ask {department!r} or an admin", refusal_outcomes.ESCALATED_AWAY)


def escalated_away_before(escalated: Sequence[clock_notices.Escalated], *,
                          escalated_at: datetime, department: str) -> Refused:
    """A department's transfer or priority change of a ticket escalated out of it before
    the request (the clock watch, or an earlier request, sent the breach), now with
    `department`: told as `escalated_away` tells it, which deadline passed, when, and
    where the ticket went, that it was escalated at `escalated_at` (escalated_from)."""
    return Refused(
        Refusal.FORBIDDEN,
        f"the ticket was escalated at {escalated_at.isoformat()}, before this request:"
        f" {_passed(escalated)}. The ticket is with {department!r} now, and a department"
        f" credential acts for its own department only: ask {department!r} or an admin",
        refusal_outcomes.ESCALATED_AWAY)


def escalated_from(row: RoutedTicketRow, principal: access.Principal
                   ) -> tuple[datetime, tuple[clock_notices.Escalated, ...]] | None:
    """When and what escalation moved the ticket to the department holding it, if it
    moved it out of the department `principal` acts for, as the ticket's trace tells:
    the last step that brought it where it is (not one flagging it in place) is an
    escalation from that department; each clock it escalated then. None otherwise (a
    department that never held it, or one it left otherwise, or before: a later transfer
    or escalation moved it on), so that where a ticket went is told only to the
    department it was escalated from, and only while it is there."""
    if principal.role is not access.Role.DEPARTMENT or principal.subject is None:
        return None
    moves = [step for step in row.trace if step.get("step") in _MOVES
             and step.get("to") != step.get("from")]
    if not moves:
        return None
    last = moves[-1]
    if last.get("step") != "escalated" or last.get("from") != principal.subject \
            or last.get("to") != row.department:
        return None
    try:
        at = moments.parse(last.get("at"))
    except ValueError:
        return None
    return at, tuple(_escalated(step, principal.subject, row.department) for step in moves
                     if step.get("step") == "escalated" and step.get("at") == last.get("at")
                     and step.get("from") == principal.subject)


# The trace's steps that move a ticket from a department to another (its routing brings
# it to its first).
_MOVES = ("transferred", "escalated")


def _passed(escalated: Sequence[clock_notices.Escalated]) -> str:
    return "; ".join(
        f"its {each.target} deadline passed at {_iso(each.due)}, unanswered, escalating"
        f" it (level 1) from {each.from_department!r} to {each.to_department!r}"
        if each.level == 1 else
        f"its {each.target} target, escalated already, was still unanswered at"
        f" {_iso(each.due)}, escalating it (level {each.level}) from"
        f" {each.from_department!r} to {each.to_department!r}" for each in escalated)


def _escalated(step: Mapping[str, Any], from_department: str,
               to_department: str) -> clock_notices.Escalated:
    """A clock escalated, as its trace step tells it: a ticket without clocks escalates
    its first response (level 1); a step written before steps kept `due`, when it fell
    due at an unknown moment."""
    target = step.get("target", "first_response")
    level = step.get("level", 1)
    try:
        due: datetime | None = moments.parse(step.get("due"))
    except ValueError:
        due = None
    return clock_notices.Escalated(
        target if target in clocks.TARGETS else "first_response",
        level if isinstance(level, int) else 1, due, from_department, to_department)


def _iso(moment: datetime | None) -> str:
    return "an unknown moment" if moment is None else moment.isoformat()
# A request under an `Idempotency-Key` (a report's; a ticket's answers alike).
KEY_REUSED = Refused(Refusal.INVALID, "this key was used for a different request; use a new"
                                      " key per ticket or report",
                     field="header.Idempotency-Key")
KEY_IN_FLIGHT = Refused(Refusal.CONFLICT, "a request with this Idempotency-Key is being"
                                          " accepted; retry after Retry-After", "in_progress")
