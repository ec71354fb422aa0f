"""Whether a ticket's copy on a department's lane is still where the ticket waits. Pure
decision code.

A lane keeps every copy written to it. A ticket resolved since its copy was queued, or
handed on since (a transfer, an escalation), leaves that copy behind, and one handed
back later has a newer copy further on in the lane. Only the store's record of the
ticket tells: its trace names each time the ticket joined a queue, with the moment its
copy carries (`routing.routed_at`). The joins after a copy's are those the trace
recorded after it, not those with later times (two writers' clocks, or one writer's
moment taken before another's record, may disagree). A copy the trace does not name is
unknown (the store lags behind a hand-over being recorded, or was down while the ticket
was routed): its reader takes it as waiting, so that no ticket is ever kept from the
department that has it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from enum import StrEnum
from typing import Any

from services.core import lifecycle
from services.router import intake_policy

# The router's answer for a copy its store does not name (HTTP 404 with this error).
COPY_NOT_KNOWN = "copy_not_known"


class CopyState(StrEnum):
    WAITING = "waiting"  # the ticket's place, as far as the store knows
    RESOLVED = "resolved"  # the ticket is resolved: it waits nowhere
    HANDED_ON = "handed_on"  # it joined another department's queue since
    QUEUED_AGAIN = "queued_again"  # it came back since: its newer copy comes later


def state_of_copy(*, status: str, trace: Iterable[Mapping[str, Any]], department: str,
                  routed_at: datetime) -> CopyState | None:
    """The state of the copy of a ticket queued for `department` at `routed_at` (its
    `routing.routed_at`), given the ticket's status and trace in the store; None when
    the trace names no such copy."""
    joins = intake_policy.queue_joins(trace)
    own = [index for index, join in enumerate(joins) if join == (routed_at, department)]
    if not own:
        return None
    if not lifecycle.is_open(status):
        return CopyState.RESOLVED
    later = joins[own[-1] + 1:]
    if not later:
        return CopyState.WAITING
    return CopyState.QUEUED_AGAIN if later[-1][1] == department else CopyState.HANDED_ON
