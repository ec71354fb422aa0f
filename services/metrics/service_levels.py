"""First-response targets: met or missed, and the histogram edges they call for.
Pure decision code.

A ticket's target is met when its first response came no later than its deadline, and
missed when it came later or when the deadline passed with no response at all: the rule
of the router's clocks (services/core/targets.py), a response dated before the clock's
last move taken at that move.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Literal

from services.core import targets

Outcome = Literal["met", "missed"]
OUTCOMES: tuple[Outcome, ...] = ("met", "missed")

# Bucket edges in seconds: minutes for chat, hours and days for e-mail.
DEFAULT_RESPONSE_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0,
                            3600.0, 7200.0, 14400.0, 28800.0, 86400.0, 172800.0)


def first_response_outcome(responded_at: datetime | None, deadline: datetime | None,
                           as_of: datetime | None = None, *,
                           last_move: datetime | None = None) -> Outcome | None:
    """met, missed, or None while it cannot be told yet (or there is no deadline).

    `as_of` is the moment up to which every response is known: without it, only a
    response can decide; with it, a deadline passed by then without one is missed.
    `last_move`: the clock's last move known (targets.answered_in_time)."""
    if deadline is None:
        return None
    if responded_at is not None:
        return "met" if targets.answered_in_time(responded_at, deadline,
                                                 last_move=last_move) else "missed"
    if as_of is not None and targets.past_due(deadline, as_of):
        return "missed"
    return None


def first_response_verdict(decided: str | None, responded_at: datetime | None,
                           deadline: datetime | None, as_of: datetime | None, *,
                           last_move: datetime | None = None) -> str | None:
    """met, missed or pending; None for a ticket without a deadline and not decided. The
    decided verdict where there is one (a timeline's target_outcome: one answered while
    its clock was paused has no deadline, and the router's clock decided it), else told
    from its dates by `as_of` (first_response_outcome), pending while it cannot be yet.
    The one rule of the metrics' stats, the simulator's summary and its history."""
    if decided is not None:
        return decided
    if deadline is None:
        return None
    return first_response_outcome(responded_at, deadline, as_of,
                                  last_move=last_move) or "pending"


def bucket_edges(defaults: Iterable[float], targets: Iterable[float]) -> tuple[float, ...]:
    """The default edges with every target added: 'answered within the target of
    receipt' is then a bucket count, exact rather than interpolated (the measure runs
    from receipt; the target's clock from the routing, seconds later)."""
    return tuple(sorted({float(edge) for edge in [*defaults, *targets]}))
