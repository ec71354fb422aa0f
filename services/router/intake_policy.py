"""The intake's rules, as verdicts the HTTP edge maps to answers. Pure decision code.

- An `Idempotency-Key` seen before: the same ticket again (replay), a request still being
  accepted (in flight), or a different ticket under a used key (mismatch).
- A department's report: dated between the ticket's arrival in that department and
  now, never earlier, which would dodge its escalation or credit the department that
  held it then (its target, its clock); a platform's or an admin's, between the
  ticket's receipt and now. A report dated a little outside (REPORT_CLOCK_SKEW either
  way: the reporter's clock runs from ours) is dated at the nearer end.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any, Protocol

from services.core import lifecycle, moments, text_forms
from services.router import service_clocks

# How far a reporter's clock (a department's, a platform's, an admin's) may run from ours:
# a report dated that little outside its plausible range is dated at the nearer end
# (report_date), not refused.
REPORT_CLOCK_SKEW = moments.CLOCK_SKEW
SKEW_NOTE = (f"up to {REPORT_CLOCK_SKEW.total_seconds() / 60:g} minutes outside, as a"
             " clock running from the router's puts it, is dated at the nearer end")

# What an `Idempotency-Key` and an `X-Correlation-ID` may be: printable ASCII, no spaces
# (no control characters, which would travel into logs, records and callbacks), 1 to 255
# and up to 128 characters; an empty correlation id is taken as not sent (the ticket's id
# stands in, as it does for none).
KEY = text_forms.Form(r"^[\x21-\x7e]+$", "printable ASCII characters (! to ~), at least one,"
                      " without spaces")
KEY_MAX_LENGTH = 255
CORRELATION_ID = text_forms.Form(r"^[\x21-\x7e]*$", "printable ASCII characters (! to ~),"
                                 " without spaces")
CORRELATION_ID_MAX_LENGTH = 128

# A ticket's trace has two bounds. Each report, customer reply, transfer and priority
# change reads and writes the ticket's row with its whole trace, and the trace is shown
# whole: unbounded, one credential's flood of reports on one ticket would make each
# report on it slower than the last. Past TRACE_STEPS_MAX (about 300 exchanges with the
# customer; a conversation longer than that is better a new ticket) the intake takes only
# what moves the ticket's service level (TAKEN_PAST_FULL): no reporter alone can go on
# adding steps as it is judged, and none is locked out of what its service level needs.
# Requests judged at one moment against the row as it stands may all be accepted, so
# past TRACE_STEPS_CEILING the trace keeps no report's own step (`with_report`): the
# router's event follower still moves the ticket's state and clocks for every report the
# intake accepted, as the metrics service does, and keeps only the last reports' event
# ids, by which a report followed again is known. There the intake takes no pause (each
# pause and reply would start one more response clock), transfer or priority change
# (recorded one claim at a time, their steps the proof a record is not applied twice).
TRACE_STEPS_MAX = 1000
TRACE_STEPS_CEILING = 2 * TRACE_STEPS_MAX
# Past the ceiling, how many of the last reports' event ids the trace keeps: a batch's
# worth, so that a batch followed again (a crash between its writes and its commit) finds
# all of its reports.
LATER_REPORTS_KEPT = 500
TAKEN_PAST_FULL = ("its resolution; a response while a response clock counts; a pause"
                   " while a clock runs and none is paused; the customer's reply while"
                   " its clocks are paused; a transfer and an admin's priority change (up"
                   f" to {TRACE_STEPS_CEILING:,} steps, and no pause past them)")
_RESPONSE_CLOCKS = ("first_response", "next_response")


class TicketState(Protocol):
    """What of a routed ticket's state (its store row) decides what it takes."""

    status: str
    first_response_at: datetime | None
    service_clocks: dict[str, Any] | None
    trace: list[dict[str, Any]]


def trace_full(trace: Sequence[Any]) -> bool:
    """Whether a ticket's trace is past TRACE_STEPS_MAX: it takes TAKEN_PAST_FULL only."""
    return len(trace) >= TRACE_STEPS_MAX


def _at_ceiling(trace: Sequence[Any]) -> bool:
    return len(trace) >= TRACE_STEPS_CEILING


def takes_report(ticket: TicketState, report: str) -> bool:
    """Whether the intake takes `report` (a lifecycle event's type) on an open ticket:
    any until its trace is full; then what moves its clocks (TAKEN_PAST_FULL), not a
    pick-up, a second pause, a response or reply that stops or resumes no clock. Judged
    one at a time, a department alone, or a platform alone, then adds a step or two at
    most (a pause pauses every running clock; a reply resumes them once, a response
    stops one)."""
    if lifecycle.reported_status(report) is lifecycle.Status.RESOLVED \
            or not trace_full(ticket.trace):
        return True
    clocks = None if ticket.service_clocks is None \
        else service_clocks.from_json(ticket.service_clocks)
    waiting = ticket.status == lifecycle.Status.WAITING_ON_CUSTOMER
    if lifecycle.resumes_clocks(report):
        return clocks.paused if clocks is not None else waiting
    if lifecycle.pauses_clocks(report):
        if _at_ceiling(ticket.trace):
            return False
        return not waiting if clocks is None else not clocks.paused and any(
            clock.running for clock in clocks.clocks)
    if lifecycle.counts_as_first_response(report):
        if clocks is None:
            return ticket.first_response_at is None
        return any(clock.target in _RESPONSE_CLOCKS and not clock.stopped
                   for clock in clocks.clocks)
    return False


def followed_already(trace: Sequence[Mapping[str, Any]], event_id: str) -> bool:
    """Whether the report of `event_id` is in the trace: its step, or past the ceiling
    its id among the last reports' (`with_report`)."""
    return any(step.get("event") == event_id or event_id in step.get("events", ())
               for step in trace)


def with_report(trace: list[dict[str, Any]], step: dict[str, Any]
                ) -> list[dict[str, Any]]:
    """The trace with a report's `step`: added until the ceiling; past it, the report
    counted in one `later_reports` step (how many, the last one's time, the last
    LATER_REPORTS_KEPT event ids), which the trace gains once."""
    if len(trace) < TRACE_STEPS_CEILING:
        return [*trace, step]
    at = next((index for index in range(len(trace) - 1, -1, -1)
               if trace[index].get("step") == "later_reports"), None)
    kept: dict[str, Any] = {} if at is None else trace[at]
    events = [*kept.get("events", []), *([step["event"]] if "event" in step else [])]
    later = {"step": "later_reports", "at": step.get("at"),
             "count": kept.get("count", 0) + 1, "events": events[-LATER_REPORTS_KEPT:]}
    return [*trace, later] if at is None else [*trace[:at], later, *trace[at + 1:]]


def takes_transfer(ticket: TicketState) -> bool:
    """A department hands over only the tickets it holds, so no one repeats a transfer
    alone: taken until the trace reaches the ceiling."""
    return not _at_ceiling(ticket.trace)


def takes_priority_change(ticket: TicketState, *, by_admin: bool) -> bool:
    """Anyone's until the trace is full; then an admin's, until the ceiling."""
    return not trace_full(ticket.trace) or (by_admin and not _at_ceiling(ticket.trace))


# The states of an `Idempotency-Key`'s claim: its request is publishing (or died doing
# so), Kafka holds what it published, or Kafka did not take it (a 503: a retry takes the
# key over at once).
PENDING, ACCEPTED, UNPUBLISHED = "pending", "accepted", "unpublished"


class Claim(Enum):
    NEW = "new"  # publish: the key is new, its first request died unanswered, or met a 503
    REPLAY = "replay"  # accepted before: answer with the first request's id
    IN_FLIGHT = "in_flight"  # the first request is still being accepted: retry later
    MISMATCH = "mismatch"  # the key was used for a different ticket or report


@dataclass(frozen=True)
class ClaimedKey:
    """An `Idempotency-Key` as the store holds it after this request claimed it."""

    holder: str  # the id its request publishes under: a ticket's, or a report's event's
    fingerprint: str
    status: str  # PENDING, ACCEPTED, UNPUBLISHED
    created_at: datetime


def judge_claim(claim: ClaimedKey, *, holder: str, fingerprint: str, now: datetime,
                in_flight_for: timedelta) -> Claim:
    """What a request publishing under `holder` (a new ticket's id, or a report's event
    id) with `fingerprint` is, given the key's claim. An unpublished claim's request was
    answered 503 (Kafka did not take it), and a pending claim older than `in_flight_for`
    was left by a request that died before Kafka answered: this one publishes now, under
    the claim's id (should Kafka have taken the first after all, its readers know the
    copy by that id)."""
    if claim.fingerprint != fingerprint:
        return Claim.MISMATCH
    if claim.holder == holder:
        return Claim.NEW
    if claim.status == ACCEPTED:
        return Claim.REPLAY
    if claim.status == UNPUBLISHED:
        return Claim.NEW
    if now - claim.created_at < in_flight_for:
        return Claim.IN_FLIGHT
    return Claim.NEW


class ReportTime(Enum):
    ACCEPTED = "accepted"
    BEFORE_RECEIPT = "before_receipt"
    BEFORE_ARRIVAL = "before_arrival"  # before the ticket came to the reporting department
    IN_FUTURE = "in_future"


# The steps of a ticket's trace that put it in a department's queue, and where to.
_ARRIVALS = {"routed": "department", "transferred": "to", "escalated": "to"}
# The steps its first routing writes at the head of a ticket's trace, in this order
# (service/route.py, trace_steps).
ROUTING_STEPS = ("received", "segmented", "routed")


def handover_claimed(until: datetime | None, now: datetime) -> bool:
    """Whether a hand-over's claim (a transfer, an escalation being published; the
    store's `claim_handover`) holds the ticket at `now`: until its end, which is then
    free to claim. Nothing else changes a claimed ticket's department or lane."""
    return until is not None and until > now


def after_routing(trace: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """What a ticket's trace gained after its first routing: its reports, hand-overs
    and priority changes."""
    head = 0
    while head < len(trace) and trace[head].get("step") in ROUTING_STEPS:
        head += 1
    return list(trace[head:])


def routing_step(trace: Iterable[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The step of a ticket's trace that says how it was first routed."""
    return next((step for step in trace if step.get("step") == "routed"), None)


def routed_at(trace: Iterable[Mapping[str, Any]]) -> datetime | None:
    """When the ticket was first routed, from its trace; None if the trace does not say."""
    step = routing_step(trace)
    try:
        return None if step is None else moments.parse(step.get("at"))
    except ValueError:
        return None


def handed_on(steps: Iterable[Mapping[str, Any]]) -> bool:
    """Whether these steps put the ticket in another department's queue: a transfer, an
    escalation to another department (not one flagged where the ticket is)."""
    return any(to != source for _at, to, source in _arrivals(steps))


def _arrivals(trace: Iterable[Mapping[str, Any]], *, in_time_order: bool = True
              ) -> list[tuple[datetime, str, Any]]:
    """The ticket's arrivals in departments, from its trace, by time (or as recorded):
    when, where to and where from (an escalation flagged in place comes from where it
    goes)."""
    found: list[tuple[datetime, str, Any]] = []
    for step in trace:
        to = _ARRIVALS.get(str(step.get("step")))
        department = None if to is None else step.get(to)
        if not isinstance(department, str):
            continue
        try:
            found.append((moments.parse(step.get("at")), department, step.get("from")))
        except ValueError:
            continue
    return sorted(found, key=lambda arrival: arrival[0]) if in_time_order else found


def arrived_at(trace: Iterable[Mapping[str, Any]], department: str) -> datetime | None:
    """When the ticket last came to `department` (routed there, or handed to it from
    another department), from its trace; None if the trace does not say."""
    times = [at for at, to, source in _arrivals(trace) if to == department != source]
    return times[-1] if times else None


def queue_joins(trace: Iterable[Mapping[str, Any]]) -> list[tuple[datetime, str]]:
    """When and where the ticket joined a department's queue (routed there, or handed
    there from another department), in the order its trace recorded them: the order
    they happened, whatever times their writers' clocks gave them."""
    return [(at, to) for at, to, source in _arrivals(trace, in_time_order=False)
            if to != source]


def held_at(trace: Iterable[Mapping[str, Any]], moment: datetime) -> str | None:
    """Which department held the ticket at `moment` (lifecycle.held_at), from its trace;
    None if the trace does not say."""
    return lifecycle.held_at(((at, to) for at, to, _source in _arrivals(trace)), moment)


def judge_report_time(occurred_at: datetime | None, *, received_at: datetime | None,
                      now: datetime, arrived: datetime | None = None) -> ReportTime:
    """Whether a report's date may stand (None: undated, it is dated on arrival): between
    the ticket's receipt (`arrived`, for a department's: when the ticket came to it) and
    now, give or take REPORT_CLOCK_SKEW."""
    if occurred_at is None:
        return ReportTime.ACCEPTED
    if received_at is not None and occurred_at < received_at - REPORT_CLOCK_SKEW:
        return ReportTime.BEFORE_RECEIPT
    if arrived is not None and occurred_at < arrived - REPORT_CLOCK_SKEW:
        return ReportTime.BEFORE_ARRIVAL
    if occurred_at > now + REPORT_CLOCK_SKEW:
        return ReportTime.IN_FUTURE
    return ReportTime.ACCEPTED


def report_date(occurred_at: datetime | None, *, received_at: datetime | None,
                now: datetime, arrived: datetime | None = None) -> datetime:
    """The date an accepted report (judge_report_time) stands at, in UTC: its own, or,
    dated by a clock running a little from ours, the nearer end of its range; undated,
    now. Never before the ticket's receipt or its arrival in the reporting department,
    so it credits no department that held the ticket before; not after now, so no clock
    is moved by a moment still to come, unless the receipt or arrival itself is (stamped
    by another instance's clock a little ahead), and then at that moment."""
    if occurred_at is None:
        return now.astimezone(UTC)
    earliest = [moment for moment in (received_at, arrived) if moment is not None]
    return max(min(occurred_at, now), *earliest).astimezone(UTC)
