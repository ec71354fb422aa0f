"""Whether a ticket's copy on a department's lane is still where the ticket waits. Pure
decision code.

A lane keeps every copy written to it. A ticket resolved since its copy was queued, or
handed on since (a transfer, an escalation), leaves that copy behind, and one handed
back later has a newer copy further on in the lane. Only the store's record of the
ticket tells: a copy it does not know of yet (the store lags behind a hand-over being
recorded, or was down while the ticket was routed) is still waiting, so that no ticket
is ever kept from the department that has it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from enum import StrEnum
from typing import Any

from services.core import lifecycle
from services.router import intake_policy


class CopyState(StrEnum):
    WAITING = "waiting"  # the ticket's place, as far as the store knows
    RESOLVED = "resolved"  # the ticket is resolved: it waits nowhere
    HANDED_ON = "handed_on"  # it joined another department's queue since
    QUEUED_AGAIN = "queued_again"  # it came back since: its newer copy comes later


def state_of_copy(*, status: str, trace: Iterable[Mapping[str, Any]], department: str,
                  routed_at: datetime) -> CopyState:
    """The state of the copy of a ticket queued for `department` at `routed_at` (its
    `routing.routed_at`), given the ticket's status and trace in the store."""
    if not lifecycle.is_open(status):
        return CopyState.RESOLVED
    later = intake_policy.queued_after(trace, routed_at)
    if not later:
        return CopyState.WAITING
    return CopyState.QUEUED_AGAIN if later[-1] == department else CopyState.HANDED_ON


def ever_queued_for(trace: Iterable[Mapping[str, Any]], department: str) -> bool:
    """Whether the trace shows the ticket in `department`'s queue at some time (whose
    copies that department may ask about)."""
    return intake_policy.arrived_at(trace, department) is not None
