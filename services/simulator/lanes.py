"""The departments whose lanes the router could not make, in a replay: which tickets
they changed, and the answer's account of them. Pure decision code.

The router's lane check knows which lanes are missing now, not when they were: the
departments missing them when a simulation runs are applied to every ticket it replays,
whatever its time. The router hands them nothing after hours or overflowing (the
department handing it on keeps the ticket: `routing.decide`, whose `withheld` says so),
and dead-letters a ticket routed to one of their missing lanes (missing_lanes.py), so
that no department sees it (it is in no backlog, answered by none, until it is replayed
once the lanes exist). The replay makes the same decisions: a ticket it routes to such a
lane is served by no department, left out of its figures, and counted here.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from services.router import routing

# How a ticket was changed by a department's missing lanes.
Effect = Literal["not_handed_after_hours", "not_overflowed", "dead_lettered"]
_WITHHELD: dict[str, Effect] = {"after_hours": "not_handed_after_hours",
                                "overflow": "not_overflowed"}
# What the answer says of them, since they are not known per ticket's time.
FOUND = ("the departments whose lanes the router could not make, as its lane check found"
         " them when the simulation ran (as_of), applied to every replayed ticket whatever"
         " its time")


@dataclass(frozen=True)
class Affected:
    """A ticket a department's missing lanes changed."""

    department: str  # the department whose lanes are missing
    effect: Effect


def dead_lettered(decision: routing.RoutingDecision,
                  lanes_missing: Mapping[str, Sequence[str]]) -> bool:
    """Whether the router's stage dead-letters the routed ticket: its lane is one of its
    department's missing lanes (`lanes_missing`; MissingLanes.refuse, by the lane)."""
    return decision.queue_topic in lanes_missing.get(decision.department, ())


def affected(decision: routing.RoutingDecision,
             lanes_missing: Mapping[str, Sequence[str]]) -> list[Affected]:
    """How `lanes_missing` (each department's missing lanes) changed a routed ticket:
    each hand-off withheld, and whether it is dead-lettered."""
    found = [Affected(held.to, _WITHHELD[held.step]) for held in decision.withheld]
    if dead_lettered(decision, lanes_missing):
        found.append(Affected(decision.department, "dead_lettered"))
    return found


@dataclass(frozen=True)
class Department:
    """A department whose lanes are missing, and its tickets: the mean per replication."""

    department: str
    lanes: tuple[str, ...]  # its lanes missing
    # Kept by a closed department that would have handed them here after hours.
    not_handed_after_hours: float
    # Kept by an overflowing department that would have overflowed them here.
    not_overflowed: float
    # Routed to one of its missing lanes: the router dead-letters them (and the replay
    # leaves them out of every department's figures).
    dead_lettered: float


def account(lanes_missing: Mapping[str, Sequence[str]],
            runs: Sequence[Sequence[Affected]]) -> list[Department]:
    """Each department of `lanes_missing`, by name, with the tickets `runs` (one list
    each replication) found it changed."""
    counts = Counter(found for run in runs for found in run)
    per_run = max(len(runs), 1)

    def mean(department: str, effect: Effect) -> float:
        return counts[Affected(department, effect)] / per_run

    return [Department(department, tuple(lanes),
                       not_handed_after_hours=mean(department, "not_handed_after_hours"),
                       not_overflowed=mean(department, "not_overflowed"),
                       dead_lettered=mean(department, "dead_lettered"))
            for department, lanes in sorted(lanes_missing.items())]
