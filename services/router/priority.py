"""Priority: service levels per route and tier, aging, and the lanes of a department queue.

Pure decision code. Priorities run from 1 (most urgent) to 5 (least). A waiting ticket
ages: its effective priority rises one level per aging step, up to 1, so tickets of
low-value customers are not starved by a steady stream of urgent ones.

Each department queue has three lanes, one topic each: `dept.<department>.high`
(priorities 1-2), `dept.<department>` (3, the topic departments already read) and
`dept.<department>.low` (4-5).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from services.core import tickets, tiers, topics

HIGHEST, LOWEST = tickets.HIGHEST_PRIORITY, tickets.LOWEST_PRIORITY
# Lanes are named in the topics module, with the other names services agree on.
Lane = topics.Lane
LANES = topics.LANES
lane_topic = topics.lane_topic
lane_topics = topics.lane_topics
TIERS = tiers.NAMES


@dataclass(frozen=True)
class ServiceLevel:
    priority: int
    first_response_target: timedelta
    next_response_target: timedelta | None = None  # None: no next-response clock
    resolution_target: timedelta | None = None  # None: no resolution clock


BUILT_IN = ServiceLevel(priority=tickets.MIDDLE_PRIORITY,
                        first_response_target=timedelta(days=1))
TARGET_KEYS = ("first_response_target", "next_response_target", "resolution_target")


@dataclass(frozen=True)
class Override:
    """Part of a service level, given by a route, a tier or a refinement."""

    priority: int | None = None
    first_response_target: timedelta | None = None
    next_response_target: timedelta | None = None
    resolution_target: timedelta | None = None

    def apply(self, level: ServiceLevel) -> ServiceLevel:
        def pick(name: str) -> Any:
            own = getattr(self, name)
            return own if own is not None else getattr(level, name)

        return ServiceLevel(pick("priority"), pick("first_response_target"),
                            pick("next_response_target"), pick("resolution_target"))

    @property
    def targets(self) -> tuple[timedelta, ...]:
        return tuple(target for name in TARGET_KEYS
                     if (target := getattr(self, name)) is not None)


@dataclass(frozen=True)
class ServiceLevels:
    """What one entry (a route, or the defaults) says, with overrides per customer tier."""

    own: Override = Override()
    tiers: Mapping[str, Override] = field(default_factory=dict)


NO_OVERRIDE = Override()
SAME_AS_DEFAULTS = ServiceLevels()


def resolve(tier: str, route: ServiceLevels | None, defaults: ServiceLevels) -> ServiceLevel:
    """The most specific wins: route+tier, route, defaults+tier, defaults, built in."""
    level = BUILT_IN
    for levels in (defaults, route):
        if levels is not None:
            level = levels.own.apply(level)
            level = levels.tiers.get(tier, Override()).apply(level)
    return level


@dataclass(frozen=True)
class Aging:
    step: timedelta | None = timedelta(hours=1)  # None: priorities never rise

    @property
    def step_seconds(self) -> float | None:
        """The step as routed tickets carry it (`routing.priority_aging_seconds`)."""
        return None if self.step is None else self.step.total_seconds()

    @classmethod
    def of_seconds(cls, seconds: float | None) -> Aging:
        return cls(None if seconds is None else timedelta(seconds=seconds))


DEFAULT_AGING = Aging()  # for a ticket whose record does not say its aging


def effective_priority(base: int, waited: timedelta, aging: Aging) -> int:
    if aging.step is None or waited <= timedelta(0):
        return base
    return max(HIGHEST, base - int(waited / aging.step))


def lane_for(priority: int) -> Lane:
    if priority <= 2:
        return "high"
    return "normal" if priority == 3 else "low"


class Head(NamedTuple):
    """The ticket at the head of a lane: its base priority, when it was queued, and the
    aging in force when it was routed (None: its record does not say)."""

    base_priority: int
    enqueued_at: datetime
    aging: Aging | None = None


def choose_next(heads: Mapping[Lane, Head], *, now: datetime,
                aging: Aging | None = None) -> Lane | None:
    """The lane whose head ticket should be taken next: the highest effective priority,
    then the longest waiting, then the higher lane. None when every lane is empty.

    Each head ages as its own record says (the routing table's `priority_aging` when it
    was routed), a head that does not say by DEFAULT_AGING; `aging`, when given,
    overrides them all."""
    if not heads:
        return None

    def aging_of(head: Head) -> Aging:
        if aging is not None:
            return aging
        return head.aging if head.aging is not None else DEFAULT_AGING

    return min(heads, key=lambda lane: (
        effective_priority(heads[lane].base_priority, now - heads[lane].enqueued_at,
                           aging_of(heads[lane])),
        heads[lane].enqueued_at, LANES.index(lane)))


def queue_for(department: str, priority: int | None) -> str:
    """The topic a ticket of this priority joins (a ticket without one: the normal lane)."""
    return lane_topic(department, "normal" if priority is None else lane_for(priority))
