"""Value features and differentiation tiers. Pure decision code.

Scores and tiers are relative to the customer base: a population run (on demand, and
after bulk changes) derives `Cutoffs` from every customer's raw values; between runs a
changed customer is scored against the last cutoffs, so one purchase updates one
customer without rescanning the base.
"""

from __future__ import annotations

import bisect
from array import array
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import date, datetime, timedelta
from typing import Any

from services.core.settings import Settings
from services.segmenter.profiles import Tier, ValueFeatures

_SETTINGS = Settings.model_fields

RECENT = timedelta(days=90)
YEAR = timedelta(days=365)


@dataclass(frozen=True)
class Purchase:
    amount: float
    purchased_at: datetime


@dataclass(frozen=True)
class TierPolicy:
    """How tiers are cut (the settings of the same names; their defaults here)."""

    most_valuable_share: float = _SETTINGS["most_valuable_share"].default
    most_growable_share: float = _SETTINGS["most_growable_share"].default
    min_growth_ratio: float = _SETTINGS["min_growth_ratio"].default


@dataclass(frozen=True)
class Cutoffs:
    """Quintile edges for R, F and M, and the values that put a customer in a tier."""

    recency_days: tuple[float, ...] = (30, 90, 180, 365)  # fewer days is better
    frequency: tuple[float, ...] = (1, 2, 4, 8)
    monetary: tuple[float, ...] = (50, 200, 1000, 5000)
    # The smallest value that puts a customer in the tier; None: nobody qualifies.
    most_valuable_from: float | None = 10_000.0  # trailing-12-month value
    most_growable_from: float | None = 1_000.0  # growth in spend

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, stored: Mapping[str, Any]) -> Cutoffs:
        def edges(name: str) -> tuple[float, ...]:
            return tuple(float(edge) for edge in stored[name])

        return cls(recency_days=edges("recency_days"), frequency=edges("frequency"),
                   monetary=edges("monetary"),
                   most_valuable_from=stored.get("most_valuable_from"),
                   most_growable_from=stored.get("most_growable_from"))


DEFAULT_CUTOFFS = Cutoffs()


def raw_features(purchases: Iterable[Purchase], *, signup_date: date | None,
                 tickets_raised: int, now: datetime) -> ValueFeatures:
    """Values without scores: totals, trailing year, growth, tenure."""
    total = trailing = recent = prior = 0.0
    count = 0
    last: datetime | None = None
    for purchase in purchases:
        at = purchase.purchased_at
        count += 1
        total += purchase.amount
        age = now - at
        if age <= YEAR:
            trailing += purchase.amount
        if age <= RECENT:
            recent += purchase.amount
        elif age <= 2 * RECENT:
            prior += purchase.amount
        last = at if last is None or at > last else last
    growth = recent - prior
    return ValueFeatures(
        total_value=round(total, 2), trailing_12m_value=round(trailing, 2),
        growth=round(growth, 2),
        growth_ratio=round(growth / max(recent, prior), 4) if max(recent, prior) > 0 else 0.0,
        tenure_days=(now.date() - signup_date).days if signup_date else 0,
        purchases=count, last_purchase_at=last, tickets_raised=tickets_raised)



def scored(features: ValueFeatures, cutoffs: Cutoffs, *, now: datetime,
           signup_date: date | None = None) -> ValueFeatures:
    """Scores as of `now` against the cutoffs in force (and tenure, if the signup is known).
    One copy of the features a call (this runs for every ticket)."""
    tenure_days = features.tenure_days if signup_date is None \
        else max(0, (now.date() - signup_date).days)
    if features.purchases == 0 or features.last_purchase_at is None:
        return replace(features, recency=0, frequency=0, monetary=0, tenure_days=tenure_days)
    days_since = (now - features.last_purchase_at).total_seconds() / 86400
    return replace(
        features,
        recency=5 - bisect.bisect_left(cutoffs.recency_days, days_since),
        frequency=1 + bisect.bisect_left(cutoffs.frequency, features.purchases),
        monetary=1 + bisect.bisect_left(cutoffs.monetary, features.total_value),
        tenure_days=tenure_days,
    )


def tier_of(features: ValueFeatures, cutoffs: Cutoffs, policy: TierPolicy) -> Tier:
    if features.purchases == 0:
        return Tier.POTENTIAL
    valuable_from, growable_from = cutoffs.most_valuable_from, cutoffs.most_growable_from
    value = features.trailing_12m_value
    if valuable_from is not None and value > 0 and value >= valuable_from:
        return Tier.MOST_VALUABLE
    if (growable_from is not None and features.growth > 0
            and features.growth >= growable_from
            and features.growth_ratio >= policy.min_growth_ratio):
        return Tier.MOST_GROWABLE
    return Tier.EXISTING


class PopulationValues:
    """What a population run keeps of each buyer: five numbers of 8 bytes, not their
    features, so the cutoffs of a base of millions come from a stream in little memory."""

    def __init__(self, policy: TierPolicy, *, now: datetime) -> None:
        self._policy = policy
        self._now = now
        self._recency, self._frequency, self._monetary, self._valuable, self._growing = (
            array("d") for _ in range(5))

    def add(self, features: ValueFeatures) -> None:
        if features.purchases <= 0 or features.last_purchase_at is None:
            return  # a prospect does not count
        self._recency.append((self._now - features.last_purchase_at).total_seconds() / 86400)
        self._frequency.append(float(features.purchases))
        self._monetary.append(features.total_value)
        self._valuable.append(features.trailing_12m_value)
        if features.growth > 0 and features.growth_ratio >= self._policy.min_growth_ratio:
            self._growing.append(features.growth)

    def __len__(self) -> int:
        return len(self._recency)

    def cutoffs(self) -> Cutoffs:
        """Cutoffs from the customers added (those with purchases)."""
        buyers = len(self)
        if not buyers:
            return DEFAULT_CUTOFFS
        policy = self._policy
        return Cutoffs(
            recency_days=_quintile_edges(_ordered(self._recency)),
            frequency=_quintile_edges(_ordered(self._frequency)),
            monetary=_quintile_edges(_ordered(self._monetary)),
            most_valuable_from=_top_share_floor(_ordered(self._valuable, descending=True),
                                                policy.most_valuable_share, buyers),
            most_growable_from=_top_share_floor(_ordered(self._growing, descending=True),
                                                policy.most_growable_share, buyers),
        )


def population_cutoffs(population: Iterable[ValueFeatures], policy: TierPolicy,
                       *, now: datetime) -> Cutoffs:
    """Cutoffs from the whole customer base (customers with purchases), read once."""
    values = PopulationValues(policy, now=now)
    for features in population:
        values.add(features)
    return values.cutoffs()


def _ordered(values: array[float], *, descending: bool = False) -> array[float]:
    return array("d", sorted(values, reverse=descending))


def _quintile_edges(ordered: Sequence[float]) -> tuple[float, ...]:
    """The 20/40/60/80 % values; scores count the edges a value passes."""
    last = len(ordered) - 1
    return tuple(ordered[round(last * share)] for share in (0.2, 0.4, 0.6, 0.8))


def _top_share_floor(descending: Sequence[float], share: float,
                     population: int) -> float | None:
    """The smallest value still within the top `share` of the population."""
    if not descending:
        return None
    place = max(1, int(population * share))
    return descending[min(place, len(descending)) - 1]
