"""When a service-level target is met, one rule for every service: answered no later
than its deadline (the deadline itself is in time), missed once its deadline has passed
unanswered. The router's clocks decide and escalate by it (services/router/clocks.py),
the metrics service counts by it (services/metrics/service_levels.py), the simulator
replays by it. A deadline is a moment (business time already counted into it): a
response during closed hours after a deadline at closing time is late. Pure.

A response counts when its clock takes it: at its own date, or at the clock's last move
(its start, a pause or resumption, a transfer, an escalation, a priority change) if that
came later (`taken_at`). Reports carry their own dates and may arrive late: a response
written in time but reported only after its clock had moved on past the deadline (handed
on, escalated or paused once the deadline had passed unanswered) is late. The service
acted on the deadline as missed, knowing of no response (escalated, counted it missed),
and what the service level reports is what was reported in time: an escalation made
stands, and so does the miss that made it; nothing counted missed turns met afterwards.
A response reported late before anything moved its clock is taken at its date."""

from __future__ import annotations

from datetime import datetime
from typing import Any


def taken_at(at: datetime, last_move: datetime | None) -> datetime:
    """When a clock takes a response (or any move) dated `at`: then, or at the clock's
    last move if that came later (the module's docstring)."""
    return at if last_move is None else max(at, last_move)


def answered_in_time(answered_at: datetime, deadline: datetime, *,
                     last_move: datetime | None = None) -> bool:
    """Whether a response dated `answered_at` meets `deadline`, its clock having last
    moved at `last_move` (None: not known to have moved since it started)."""
    return taken_at(answered_at, last_move) <= deadline


def past_due(deadline: datetime, now: datetime) -> bool:
    """Whether a target still unanswered at `now` is missed."""
    return now > deadline


def past_due_where(deadline: Any, now: datetime) -> Any:
    """`past_due` as a query's condition on a deadline column (a SQLAlchemy expression):
    the stores select by the same rule their callers then apply."""
    return deadline < now
