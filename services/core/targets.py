"""When a service-level target is met, one rule for every service: answered no later
than its deadline (the deadline itself is in time), missed once its deadline has passed
unanswered. The router's clocks decide and escalate by it (services/router/clocks.py),
the metrics service counts by it (services/metrics/service_levels.py), the simulator
replays by it. A deadline is a moment (business time already counted into it): a
response during closed hours after a deadline at closing time is late. Pure."""

from __future__ import annotations

from datetime import datetime
from typing import Any


def answered_in_time(answered_at: datetime, deadline: datetime) -> bool:
    return answered_at <= deadline


def past_due(deadline: datetime, now: datetime) -> bool:
    """Whether a target still unanswered at `now` is missed."""
    return now > deadline


def past_due_where(deadline: Any, now: datetime) -> Any:
    """`past_due` as a query's condition on a deadline column (a SQLAlchemy expression):
    the stores select by the same rule their callers then apply."""
    return deadline < now
