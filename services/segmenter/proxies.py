"""Proxy detection: rules that read no protected attribute by name but select customers
strongly associated with one (a language or postcode that stands in for age or gender).
Pure decision code.

For each rule and each protected attribute the service bands (age band, gender,
socio-economic band: services/core/groups.py; not a path a rule file's
`protected_attributes` adds, which has no bands), the customers the rule holds for are set
against the rest in a table of counts per band, and the association is measured with
Cramér's V (0: the rule picks every band alike; 1: its matches are told by the band
alone). Customers whose band is unknown are left out of that attribute's table. Only
counts are kept, so the whole customer base streams through.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from services.core import groups


@dataclass(frozen=True)
class Policy:
    threshold: float = 0.3  # Cramér's V at or above which a rule is flagged
    # Neither the rule's matches nor the rest may be fewer customers than this: a rule
    # is not flagged (nor a band named) on a handful of customers.
    minimum_customers: int = 30


@dataclass(frozen=True)
class Proxy:
    rule: str
    attribute: str
    cramers_v: float
    customers: int  # customers with a known band of the attribute
    matched: int  # of those, the customers the rule holds for
    band: str  # the band most over-represented among the rule's matches
    share_of_matches: float  # that band's share of the rule's matches ...
    share_of_customers: float  # ... and of all the customers counted


@dataclass(frozen=True)
class Detection:
    policy: Policy
    attributes: tuple[str, ...]
    rules_checked: tuple[str, ...]
    proxies: tuple[Proxy, ...]  # strongest first


def cramers_v(table: Sequence[Sequence[int]]) -> float:
    """Cramér's V of a table of counts (rows x columns); 0 when a row or column is empty."""
    rows = [sum(row) for row in table]
    columns = [sum(column) for column in zip(*table, strict=True)]
    total = sum(rows)
    kept_rows, kept_columns = sum(1 for r in rows if r), sum(1 for c in columns if c)
    if total == 0 or min(kept_rows, kept_columns) < 2:
        return 0.0
    chi_squared = sum((observed - expected) ** 2 / expected
                      for i, row in enumerate(table) for j, observed in enumerate(row)
                      if (expected := rows[i] * columns[j] / total) > 0)
    return math.sqrt(chi_squared / (total * (min(kept_rows, kept_columns) - 1)))


class ProxyDetection:
    """Accumulates, customer by customer, which rules hold per band of each attribute."""

    def __init__(self, rules: Sequence[str], attributes: Sequence[str],
                 policy: Policy | None = None) -> None:
        self.policy = policy or Policy()
        self.rules, self.attributes = tuple(rules), tuple(attributes)
        self._customers: dict[str, Counter[str]] = {a: Counter() for a in self.attributes}
        self._matched: dict[tuple[str, str], Counter[str]] = {
            (rule, attribute): Counter() for rule in self.rules for attribute in self.attributes}

    def add(self, bands: Mapping[str, str], holding: Iterable[str]) -> None:
        held = [rule for rule in holding if rule in self.rules]
        for attribute in self.attributes:
            band = bands.get(attribute, groups.UNKNOWN)
            if band == groups.UNKNOWN:
                continue
            self._customers[attribute][band] += 1
            for rule in held:
                self._matched[(rule, attribute)][band] += 1

    def detection(self) -> Detection:
        found = [proxy for rule in self.rules for attribute in self.attributes
                 if (proxy := self._proxy(rule, attribute)) is not None]
        found.sort(key=lambda p: (-p.cramers_v, p.rule, p.attribute))
        return Detection(self.policy, self.attributes, self.rules, tuple(found))

    def _proxy(self, rule: str, attribute: str) -> Proxy | None:
        everyone, matched = self._customers[attribute], self._matched[(rule, attribute)]
        customers, matches = sum(everyone.values()), sum(matched.values())
        minimum = self.policy.minimum_customers
        if matches < minimum or customers - matches < minimum:
            return None
        bands = sorted(everyone)
        strength = cramers_v([[matched[b] for b in bands],
                              [everyone[b] - matched[b] for b in bands]])
        if strength < self.policy.threshold:
            return None
        band = max(bands, key=lambda b: (matched[b] / matches - everyone[b] / customers, b))
        return Proxy(rule, attribute, round(strength, 3), customers, matches, band,
                     round(matched[band] / matches, 3), round(everyone[band] / customers, 3))
