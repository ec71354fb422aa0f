"""A ticket's service-level clocks: first response, next response and resolution.
Pure decision code; the time and the department's calendar are passed in.

A clock counts business time of the department holding the ticket (calendars.py). It
runs from its start, pauses while the ticket waits on the customer and resumes when the
customer replies, keeping what it had spent. Its deadline is the start of the current
run plus what is left of the target; its warning comes at a share of the target. A
transfer, an escalation or a priority change rebases it: what it spent stays, the rest is
counted in the new department's hours against the (possibly new) target. A deadline
passed unanswered (targets.past_due) stays the clock's deadline from then on: nothing is
left to count, and no rebase, pause or resumption moves it to a later moment, such as
the next opening of the new department's hours, against which a late answer would look
in time.

Events carry their own dates and may come out of order, so one rule holds for every
move of a clock (pause, resume, stop, rebase): one dated before the clock's last change
(`last_change`: its start, the start of its current run or pause, its stop) is taken at
that change. A clock's time never runs backwards, and no stretch is counted twice: a
customer's reply dated before the pause it ends resumes the clock where it paused, not
at the reply's date, which would count the time between again, as spent before the
pause and as run since the reply.

Levels: 0 running within target, 1 breached (escalated), 2 still unanswered
`second_level_after` later (escalated again, or flagged).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from datetime import datetime, timedelta
from typing import Any, Literal

from services.core import targets
from services.router import calendars

Target = Literal["first_response", "next_response", "resolution"]
TARGETS: tuple[Target, ...] = ("first_response", "next_response", "resolution")
Outcome = Literal["met", "missed"]
Notice = Literal["warning", "breach", "second_level"]


@dataclass(frozen=True)
class Clock:
    target: Target
    instance: int  # the n-th clock of its target on this ticket (next responses repeat)
    target_seconds: float
    started_at: datetime
    spent_seconds: float = 0.0  # business time spent before `running_since`
    running_since: datetime | None = None  # None: paused or stopped
    paused_since: datetime | None = None
    paused_seconds: float = 0.0  # wall-clock time spent paused
    deadline: datetime | None = None  # None while paused or stopped
    warning_at: datetime | None = None  # None: no warning due (sent, off or paused)
    level: int = 0
    second_level_at: datetime | None = None
    second_level_to: str | None = None  # None: flagged where it is
    stopped_at: datetime | None = None
    # Missed from its breach on (nothing after can make it met); met or missed once stopped.
    outcome: Outcome | None = None
    # The deadline it passed unanswered, kept through pauses and rebases (None: not passed,
    # or not yet seen passed by a pause or rebase: then `deadline` is still that moment).
    missed_deadline: datetime | None = None

    @property
    def running(self) -> bool:
        return self.running_since is not None

    @property
    def stopped(self) -> bool:
        return self.stopped_at is not None

    @property
    def key(self) -> str:
        return f"{self.target}#{self.instance}"


def start(target: Target, instance: int, target_duration: timedelta, at: datetime,
          calendar: calendars.Calendar | None, *, warning_share: float | None,
          deadline: datetime | None = None) -> Clock:
    """A clock running from `at`. `deadline`: the target's deadline from `at` where the
    caller has it already (the routing decision's first-response deadline, which
    routing.decide works out from the same target, moment and calendar); else worked
    out here."""
    if deadline is None:
        deadline, warning_at = _due(target_duration, timedelta(0), 0, at, calendar,
                                    warning_share)
    else:
        warning_at = _warning_at(target_duration, timedelta(0), 0, at, calendar,
                                 warning_share)
    return Clock(target, instance, target_duration.total_seconds(), at, running_since=at,
                 deadline=deadline, warning_at=warning_at)


def last_change(clock: Clock) -> datetime:
    """When the clock last changed: its stop, else the start of its current run or
    pause, else its start."""
    return clock.stopped_at or clock.running_since or clock.paused_since or clock.started_at


def taken_at(clock: Clock, at: datetime) -> datetime:
    """When a move of the clock dated `at` is taken: then, or at the clock's last change
    if that came later (the module's docstring; targets.taken_at)."""
    return targets.taken_at(at, last_change(clock))


def pause(clock: Clock, at: datetime, calendar: calendars.Calendar | None) -> Clock:
    if not clock.running:
        return clock
    at = taken_at(clock, at)
    return replace(clock, spent_seconds=_spent(clock, at, calendar), running_since=None,
                   paused_since=at, deadline=None, warning_at=None,
                   missed_deadline=_missed_deadline(clock, at))


def resume(clock: Clock, at: datetime, calendar: calendars.Calendar | None, *,
           warning_share: float | None) -> Clock:
    if clock.running or clock.stopped or clock.paused_since is None:
        return clock
    at = taken_at(clock, at)
    paused = (at - clock.paused_since).total_seconds()
    return _run(replace(clock, paused_since=None,
                        paused_seconds=clock.paused_seconds + paused), at, calendar,
                warning_share)


def rebase(clock: Clock, at: datetime, old: calendars.Calendar | None,
           new: calendars.Calendar | None, *, target_duration: timedelta | None = None,
           warning_share: float | None) -> Clock:
    """Transfer, escalation or priority change: keep the time spent (in the old
    department's hours) and paused; count the rest in the new department's hours against
    the new target. A deadline already passed stays (`missed_deadline`). A paused clock
    is moved too: its pause runs on from the move (the time paused so far counted), so
    that the move is its last change, as the metrics service takes it (targets.py)."""
    if clock.stopped:
        return clock
    target_seconds = clock.target_seconds if target_duration is None \
        else target_duration.total_seconds()
    at = taken_at(clock, at)
    if not clock.running:  # paused: the pause goes on from the move, the time counted
        return replace(clock, target_seconds=target_seconds, paused_since=at,
                       paused_seconds=clock.paused_seconds + _paused_until(clock, at))
    spent = _spent(clock, at, old)
    return _run(replace(clock, spent_seconds=spent, target_seconds=target_seconds,
                        running_since=None, missed_deadline=_missed_deadline(clock, at)),
                at, new, warning_share)


def stop(clock: Clock, at: datetime, calendar: calendars.Calendar | None) -> Clock:
    """The clock's target is answered at `at`: met if no breach came first, and in time
    by targets.answered_in_time, the rule the metrics service decides by too (a response
    dated before the clock's last change is taken at that change; after a deadline at
    closing time, during closed hours, is late though no more business time was spent).
    A running clock's deadline alone decides, not the time spent: a shorter target
    already used up at a priority change is due at the change itself, and the deadline
    itself is in time. A paused clock has none: answered then, it is missed if the
    deadline had passed before the pause (`missed_deadline`) or its target is used up
    (a shorter one given while paused)."""
    if clock.stopped:
        return clock
    taken = taken_at(clock, at)
    spent = _spent(clock, taken, calendar) if clock.running else clock.spent_seconds
    missed = clock.level > 0 or clock.missed_deadline is not None or (
        spent > clock.target_seconds if clock.deadline is None
        else not targets.answered_in_time(at, clock.deadline, last_move=last_change(clock)))
    at = taken
    return replace(clock, spent_seconds=spent, running_since=None, deadline=None,
                   warning_at=None, second_level_at=None, stopped_at=at,
                   paused_seconds=clock.paused_seconds + _paused_until(clock, at),
                   paused_since=None, outcome="missed" if missed else "met")


def due(clock: Clock, now: datetime) -> Notice | None:
    """What the clock calls for at `now`, most urgent first (one at a time)."""
    if not clock.running:
        return None
    if clock.level == 0 and clock.deadline is not None \
            and targets.past_due(clock.deadline, now):
        return "breach"
    if clock.level == 1 and clock.second_level_at is not None \
            and clock.second_level_at <= now:
        return "second_level"
    if clock.warning_at is not None and clock.warning_at <= now:
        return "warning"
    return None


def warned(clock: Clock) -> Clock:
    return replace(clock, warning_at=None)


def breached(clock: Clock, at: datetime, calendar: calendars.Calendar | None,
             second_level_after: timedelta | None, second_level_to: str | None = None,
             ) -> Clock:
    """Level 1, the target missed; level 2 comes `second_level_after` of business time
    later, if set."""
    later = None if second_level_after is None else calendars.deadline(
        at, second_level_after, calendar)
    return replace(clock, level=1, warning_at=None, second_level_at=later,
                   second_level_to=second_level_to, outcome="missed")


def second_level(clock: Clock) -> Clock:
    return replace(clock, level=2, second_level_at=None)


def with_escalation_marks(current: Clock, marked: Clock) -> Clock:
    """`marked`'s escalation marks (breached, second_level), made on the clock as a check
    read it, on the clock as it stands: anything newer (a stop) wins."""
    if current.stopped:
        return current
    return replace(current, level=marked.level, warning_at=None,
                   second_level_at=marked.second_level_at,
                   second_level_to=marked.second_level_to, outcome=marked.outcome)


def next_check(clocks: list[Clock]) -> datetime | None:
    """The earliest moment any of the clocks calls for something (None: none will)."""
    moments = [moment for clock in clocks if clock.running
               for moment in (clock.warning_at,
                              clock.deadline if clock.level == 0 else None,
                              clock.second_level_at if clock.level == 1 else None)
               if moment is not None]
    return min(moments, default=None)


def _run(clock: Clock, at: datetime, calendar: calendars.Calendar | None,
         warning_share: float | None) -> Clock:
    if clock.missed_deadline is not None:  # nothing left: no warning, no later deadline
        return replace(clock, running_since=at, deadline=clock.missed_deadline,
                       warning_at=None)
    deadline, warning_at = _due(timedelta(seconds=clock.target_seconds),
                                timedelta(seconds=clock.spent_seconds), clock.level, at,
                                calendar, warning_share)
    return replace(clock, running_since=at, deadline=deadline, warning_at=warning_at)


def _due(target: timedelta, spent: timedelta, level: int, at: datetime,
         calendar: calendars.Calendar | None, warning_share: float | None,
         ) -> tuple[datetime, datetime | None]:
    """A clock running from `at`: its deadline, and when its warning is due (None: none).
    With nothing left (a shorter target already used up), the deadline is `at` itself,
    not the next opening of the hours: a response after it is late by the deadline as
    by the time spent."""
    left = target - spent
    deadline = calendars.deadline(at, left, calendar) if left > timedelta(0) else at
    return deadline, _warning_at(target, spent, level, at, calendar, warning_share)


def _warning_at(target: timedelta, spent: timedelta, level: int, at: datetime,
                calendar: calendars.Calendar | None, warning_share: float | None,
                ) -> datetime | None:
    """When the warning of a clock running from `at` is due (None: none)."""
    if warning_share is None or level != 0:
        return None
    warn_after = target * warning_share - spent
    if warn_after <= timedelta(0):  # a warning already due was sent, or is moot
        return None
    return calendars.deadline(at, warn_after, calendar)


def _missed_deadline(clock: Clock, at: datetime) -> datetime | None:
    """The deadline the clock has passed unanswered by `at`, if it has."""
    if clock.missed_deadline is not None:
        return clock.missed_deadline
    if clock.deadline is not None and targets.past_due(clock.deadline, at):
        return clock.deadline
    return None


def _spent(clock: Clock, at: datetime, calendar: calendars.Calendar | None) -> float:
    if clock.running_since is None:
        return clock.spent_seconds
    return clock.spent_seconds + calendars.business_time(
        clock.running_since, at, calendar).total_seconds()


def _paused_until(clock: Clock, at: datetime) -> float:
    return 0.0 if clock.paused_since is None else (at - clock.paused_since).total_seconds()


_FIELDS = frozenset(field.name for field in fields(Clock))
_MOMENTS = ("started_at", "running_since", "paused_since", "deadline", "warning_at",
            "second_level_at", "stopped_at", "missed_deadline")


def to_json(clock: Clock) -> dict[str, Any]:
    data: dict[str, Any] = dict(clock.__dict__)
    for name in _MOMENTS:
        data[name] = None if data[name] is None else data[name].isoformat()
    if data["missed_deadline"] is None:  # as written before it existed
        del data["missed_deadline"]
    return data


def from_json(data: dict[str, Any]) -> Clock:
    """A stored clock; a key a later release added is left out (the clock as this
    release keeps it), so that a rolling upgrade's next step reads this one's."""
    values = {name: value for name, value in data.items() if name in _FIELDS}
    for name in _MOMENTS:
        values[name] = None if values.get(name) is None \
            else datetime.fromisoformat(values[name])
    return Clock(**values)
