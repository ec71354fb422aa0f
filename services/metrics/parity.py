"""Service parity: the service each protected group of customers actually got, and how
far each group falls behind the best-served one. Pure decision code.

`ParityTally` is the one computation: the stats endpoint, the Prometheus export and the
PNG report feed it the measured timelines a page at a time (service.parity_stats), and
`service_parity` and `parity_by_attribute` a list (bench/parity_picture.py's generated
history; a simulation can give its predicted timelines). Per group (a band of one protected
attribute, services/core/groups.py): first-response time percentiles, the share of
first-response targets met, and the share of tickets answered without escalation. Each
is set against the best-served group as a ratio (1: as well served; 0.8: four-fifths as
well). A group is flagged when a ratio is below the threshold and the gap is more than
chance (`_z`): with a few dozen tickets, medians and shares wander.

A group with fewer tickets than the minimum is suppressed: no figure of it is given,
so no small group (and no customer in it) can be made out. The `unknown` band (no
profile, or no value) is measured but not compared: it mixes customers the store does
not know, who are routed differently, with those who keep the attribute to themselves.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from services.core import groups
from services.core.settings import Settings
from services.metrics import stats
from services.metrics.timeline import Timeline, duration
from services.metrics.timeline import escalated as timeline_escalated

_SETTINGS = Settings.model_fields

FIRST_RESPONSE = "first_response"  # best median / the group's median
TARGET_ATTAINMENT = "target_attainment"  # the group's share met / the best share
WITHOUT_ESCALATION = "without_escalation"  # likewise, tickets never escalated
MEASURES = (FIRST_RESPONSE, TARGET_ATTAINMENT, WITHOUT_ESCALATION)
# A gap flagged must be one chance would leave in fewer than 5 cases of 100, across all
# the comparisons of an attribute (Bonferroni): the best-served group is picked as the
# best of several, so one test at 5% per comparison would flag noise.
SIGNIFICANCE = 0.05


@dataclass(frozen=True)
class Policy:
    """When a group is flagged (the settings parity_threshold, by default the
    four-fifths rule, and protected_group_minimum_size; their defaults here)."""

    threshold: float = _SETTINGS["parity_threshold"].default
    minimum_group_size: int = _SETTINGS["protected_group_minimum_size"].default


@dataclass(frozen=True)
class GroupService:
    group: str
    suppressed: bool  # fewer tickets than the minimum: no figures given
    tickets: int | None = None
    first_response_seconds: stats.Percentiles | None = None
    target_attainment: float | None = None  # met / (met + missed)
    escalation_rate: float | None = None
    # measure -> the group's level relative to the best-served group's (None: not compared)
    ratios: Mapping[str, float | None] = field(default_factory=dict)
    disparity_ratio: float | None = None  # the lowest of the ratios
    below_threshold: bool = False  # a ratio below the threshold, by more than chance


@dataclass(frozen=True)
class AttributeParity:
    attribute: str
    best_served: Mapping[str, str | None]  # measure -> group
    groups: tuple[GroupService, ...]
    below_threshold: tuple[str, ...]  # the groups flagged


@dataclass(frozen=True)
class _Levels:
    """What a group got, as counts (levels: higher is better; None: cannot tell)."""

    response_seconds: tuple[float, ...]  # sorted
    met: int
    decided: int  # targets met or missed
    kept: int  # tickets never escalated
    tickets: int

    @property
    def first_response_p50(self) -> float | None:
        return stats.percentiles(self.response_seconds).p50

    @property
    def target_attainment(self) -> float | None:
        return self.met / self.decided if self.decided else None

    @property
    def without_escalation(self) -> float | None:
        return self.kept / self.tickets if self.tickets else None


def service_parity(timelines: Iterable[Timeline], group_of_ticket: Mapping[str, str], *,
                   attribute: str, now: datetime | None,
                   policy: Policy | None = None) -> AttributeParity:
    """Parity across the groups of one attribute; `group_of_ticket` maps a ticket id to
    its customer's band (a ticket it lacks is `unknown`)."""
    [found] = parity_by_attribute(
        timelines, {ticket: {attribute: band} for ticket, band in group_of_ticket.items()},
        attributes=(attribute,), now=now, policy=policy)
    return found


def parity_by_attribute(timelines: Iterable[Timeline],
                        bands_of_ticket: Mapping[str, Mapping[str, str]], *,
                        attributes: Sequence[str], now: datetime | None,
                        policy: Policy | None = None) -> tuple[AttributeParity, ...]:
    """`service_parity` for each attribute; `bands_of_ticket`: ticket id -> the bands of
    its customer (services/core/groups.py `bands`)."""
    tally = ParityTally(attributes, now=now)
    for timeline in timelines:
        tally.add(timeline, bands_of_ticket.get(timeline.ticket_id, {}))
    return tally.parities(policy)


class ParityTally:
    """The groups of each attribute, counted one ticket at a time (a page of tickets and
    their customers' bands at a time): of a ticket only its first-response time is
    kept."""

    def __init__(self, attributes: Sequence[str], *, now: datetime | None) -> None:
        self.attributes, self.now = tuple(attributes), now
        self._groups: dict[str, dict[str, _GroupCount]] = {a: {} for a in self.attributes}

    def add(self, timeline: Timeline, bands: Mapping[str, str]) -> None:
        """A ticket, with its customer's bands (an attribute it lacks: `unknown`)."""
        response = duration(timeline, "first_response")
        decided = stats.outcome(timeline, self.now)
        escalated = timeline_escalated(timeline)
        for attribute, counts in self._groups.items():
            band = bands.get(attribute, groups.UNKNOWN)
            if band not in counts:
                counts[band] = _GroupCount()
            counts[band].add(response, decided, escalated=escalated)

    def parities(self, policy: Policy | None = None) -> tuple[AttributeParity, ...]:
        return tuple(_compared(attribute, {band: count.levels() for band, count in
                                           self._groups[attribute].items()}, policy or Policy())
                     for attribute in self.attributes)


class _GroupCount:
    def __init__(self) -> None:
        self.response_seconds: list[float] = []
        self.met = self.decided = self.escalated = self.tickets = 0

    def add(self, response: float | None, outcome: str | None, *, escalated: bool) -> None:
        self.tickets += 1
        if response is not None:
            self.response_seconds.append(response)
        self.met += outcome == "met"
        self.decided += outcome in ("met", "missed")
        self.escalated += escalated

    def levels(self) -> _Levels:
        return _Levels(tuple(sorted(self.response_seconds)), met=self.met,
                       decided=self.decided, kept=self.tickets - self.escalated,
                       tickets=self.tickets)


def _compared(attribute: str, levels_of: Mapping[str, _Levels],
              policy: Policy) -> AttributeParity:
    """Each group set against the best-served one."""
    measured = {band: levels for band, levels in levels_of.items()
                if levels.tickets >= policy.minimum_group_size}
    compared = {band: levels for band, levels in measured.items() if band != groups.UNKNOWN}
    best = _best_served(compared)
    comparisons = max(1, (len(compared) - 1) * len(MEASURES))
    critical_z = statistics.NormalDist().inv_cdf(1 - SIGNIFICANCE / comparisons / 2)
    services = []
    for band in sorted(levels_of):
        if band not in measured:
            services.append(GroupService(band, suppressed=True))
            continue
        levels = measured[band]
        ratios: dict[str, float | None] = {}
        flagged = False
        if band in compared:
            for measure, best_band in best.items():
                reference = compared[best_band] if best_band else None
                ratios[measure] = _ratio(measure, levels, reference)
                ratio = ratios[measure]
                flagged |= (ratio is not None and ratio < policy.threshold
                            and reference is not None
                            and _z(measure, levels, reference) >= critical_z)
        known = [r for r in ratios.values() if r is not None]
        services.append(GroupService(
            band, suppressed=False, tickets=levels.tickets,
            first_response_seconds=stats.percentiles(levels.response_seconds),
            target_attainment=_rounded(levels.target_attainment),
            escalation_rate=None if levels.without_escalation is None
            else round(1 - levels.without_escalation, 4),
            ratios=ratios, disparity_ratio=min(known) if known else None,
            below_threshold=flagged))
    return AttributeParity(attribute, best, tuple(services),
                           tuple(s.group for s in services if s.below_threshold))


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _best_served(compared: Mapping[str, _Levels]) -> dict[str, str | None]:
    def best(value_of: str, lowest_is_best: bool) -> str | None:
        known = [(value, band) for band, levels in compared.items()
                 if (value := getattr(levels, value_of)) is not None]
        if not known:
            return None
        return (min(known) if lowest_is_best else max(known))[1]

    return {FIRST_RESPONSE: best("first_response_p50", True),
            TARGET_ATTAINMENT: best("target_attainment", False),
            WITHOUT_ESCALATION: best("without_escalation", False)}


def _ratio(measure: str, levels: _Levels, best: _Levels | None) -> float | None:
    if best is None:
        return None
    if measure == FIRST_RESPONSE:  # time: the best median over the group's
        numerator, denominator = best.first_response_p50, levels.first_response_p50
    else:
        value = "target_attainment" if measure == TARGET_ATTAINMENT else "without_escalation"
        numerator, denominator = getattr(levels, value), getattr(best, value)
    if numerator is None or denominator is None:
        return None
    if denominator == 0:
        return 1.0 if numerator == 0 else None
    return round(min(1.0, numerator / denominator), 4)


def _z(measure: str, levels: _Levels, best: _Levels) -> float:
    """How far the gap is beyond chance: a two-proportion z statistic; for time, of the
    shares answered by the two groups' common median (Mood's median test)."""
    if measure == FIRST_RESPONSE:
        both = sorted([*levels.response_seconds, *best.response_seconds])
        if not both:
            return 0.0
        median = both[(len(both) - 1) // 2]
        counts = [(sum(1 for s in group.response_seconds if s <= median),
                   len(group.response_seconds)) for group in (levels, best)]
    elif measure == TARGET_ATTAINMENT:
        counts = [(levels.met, levels.decided), (best.met, best.decided)]
    else:
        counts = [(levels.kept, levels.tickets), (best.kept, best.tickets)]
    (good, trials), (best_good, best_trials) = counts
    if not trials or not best_trials:
        return 0.0
    pooled = (good + best_good) / (trials + best_trials)
    spread = math.sqrt(pooled * (1 - pooled) * (1 / trials + 1 / best_trials))
    gap = abs(good / trials - best_good / best_trials)
    if spread == 0:
        return math.inf if gap else 0.0
    return gap / spread


def ratio_series(parities: Sequence[AttributeParity]) -> dict[tuple[str, ...], float]:
    """(attribute, group, measure) -> ratio of every group compared: the exported gauge."""
    return {(parity.attribute, service.group, measure): ratio
            for parity in parities for service in parity.groups
            for measure, ratio in service.ratios.items() if ratio is not None}


def flag_series(parities: Sequence[AttributeParity]) -> dict[tuple[str, ...], float]:
    """(attribute, group) -> 1 if flagged, else 0, for every group compared."""
    return {(parity.attribute, service.group): float(service.below_threshold)
            for parity in parities for service in parity.groups if service.ratios}
