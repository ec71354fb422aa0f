"""Service parity: the service each protected group of customers actually got, and how
far each group falls behind the best-served one. Pure decision code.

`service_parity(timelines, group_of_ticket, ...)` is the one computation: the stats
endpoint, the Prometheus export and the PNG report call it over the measured timelines,
and a simulation can call it over predicted ones. Per group (a band of one protected
attribute, services/core/groups.py): first-response time percentiles, the share of
first-response targets met, and the share of tickets answered without escalation. Each
is set against the best-served group as a ratio (1: as well served; 0.8: four-fifths
as well). A group is flagged when a ratio is below the threshold and the gap is more
than chance (`_z`): with a few dozen tickets, medians and shares wander.

A group with fewer tickets than the minimum is suppressed: no figure of it is given,
so no small group (and no customer in it) can be made out. The `unknown` band (no
profile, or no value) is measured but not compared: it mixes customers the store does
not know, who are routed differently, with those who keep the attribute to themselves.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from services.core import groups
from services.core.settings import Settings
from services.metrics import stats
from services.metrics.timeline import Timeline

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


def service_parity(timelines: Sequence[Timeline], group_of_ticket: Mapping[str, str], *,
                   attribute: str, now: datetime | None,
                   policy: Policy | None = None) -> AttributeParity:
    """Parity across the groups of one attribute; `group_of_ticket` maps a ticket id to
    its customer's band (a ticket it lacks is `unknown`)."""
    policy = policy or Policy()
    by_group: dict[str, list[Timeline]] = {}
    for timeline in timelines:
        band = group_of_ticket.get(timeline.ticket_id, groups.UNKNOWN)
        by_group.setdefault(band, []).append(timeline)
    measured = {band: _measure(members, now) for band, members in by_group.items()
                if len(members) >= policy.minimum_group_size}
    compared = {band: levels for band, levels in measured.items() if band != groups.UNKNOWN}
    best = _best_served(compared)
    comparisons = max(1, (len(compared) - 1) * len(MEASURES))
    critical_z = statistics.NormalDist().inv_cdf(1 - SIGNIFICANCE / comparisons / 2)
    services = []
    for band in sorted(by_group):
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


def _measure(members: Sequence[Timeline], now: datetime | None) -> _Levels:
    attained = stats.attainment(members, now)
    escalated = sum(1 for t in members if any(a.kind == "escalated" for a in t.assignments))
    return _Levels(tuple(sorted(stats.measured_seconds(members, "first_response"))),
                   met=attained.met, decided=attained.met + attained.missed,
                   kept=len(members) - escalated, tickets=len(members))


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


def parity_by_attribute(timelines: Sequence[Timeline],
                        bands_of_ticket: Mapping[str, Mapping[str, str]], *,
                        attributes: Sequence[str], now: datetime | None,
                        policy: Policy | None = None) -> tuple[AttributeParity, ...]:
    """`service_parity` for each attribute; `bands_of_ticket`: ticket id -> the bands of
    its customer (services/core/groups.py `bands`)."""
    return tuple(service_parity(
        timelines, {ticket: bands.get(attribute, groups.UNKNOWN)
                    for ticket, bands in bands_of_ticket.items()},
        attribute=attribute, now=now, policy=policy) for attribute in attributes)


def ratio_series(parities: Sequence[AttributeParity]) -> dict[tuple[str, ...], float]:
    """(attribute, group, measure) -> ratio of every group compared: the exported gauge."""
    return {(parity.attribute, service.group, measure): ratio
            for parity in parities for service in parity.groups
            for measure, ratio in service.ratios.items() if ratio is not None}


def flag_series(parities: Sequence[AttributeParity]) -> dict[tuple[str, ...], float]:
    """(attribute, group) -> 1 if flagged, else 0, for every group compared."""
    return {(parity.attribute, service.group): float(service.below_threshold)
            for parity in parities for service in parity.groups if service.ratios}
