"""The detailed analysis of a rule set over the whole customer base, before it is used.

Pure decision code. Customers are fed one at a time and only counts are kept, so a
million customers never need to be in memory at once. The report answers the questions
the business asks before grouping (domain.md sections 6 and 7): how big each segment is,
who only the default catches, which rules never match or are hidden behind earlier ones,
which rules read protected attributes or stand in for one (services/segmenter/proxies.py),
and who would change segment against the live set.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from services.core import groups
from services.segmenter import proxies
from services.segmenter.rules import ENVIRONMENT, Rule, RuleEvaluationError, RuleSet

SAMPLE_SIZE = 10


@dataclass(frozen=True)
class DefaultOnly:
    count: int
    sample_customer_ids: tuple[str, ...]


@dataclass(frozen=True)
class RuleReport:
    name: str
    segment: str
    line: int | None
    first_matches: int  # customers this rule decides
    all_matches: int  # customers for whom it holds, decided by it or not
    never_matches: bool
    shadowed: bool  # it holds for some customers, but earlier rules claim every one
    shadowed_by: tuple[str, ...]  # earlier rules that claimed some of its matches
    reads: tuple[str, ...]
    protected_reads: tuple[str, ...]


@dataclass(frozen=True)
class Move:
    from_segment: str
    to_segment: str
    customers: int


@dataclass(frozen=True)
class Moves:
    moves: tuple[Move, ...]  # most customers first
    unchanged: int


@dataclass(frozen=True)
class RuleFailures:
    rule: str
    customers: int
    first_customer_id: str
    first_error: str


@dataclass(frozen=True)
class Errors:
    customers: int  # customers on whom at least one candidate rule failed
    rules: tuple[RuleFailures, ...]


@dataclass(frozen=True)
class Report:
    rules_version: str
    live_version: str | None
    customers: int
    segment_sizes: Mapping[str, int]
    default_only: DefaultOnly
    rules: tuple[RuleReport, ...]
    protected_rules: tuple[str, ...]
    moves: Moves | None  # only when compared with a live rule set
    errors: Errors
    proxy_detection: proxies.Detection


class Analysis:
    """Accumulates the analysis of `candidate`, optionally against the `live` rule set."""

    def __init__(self, candidate: RuleSet, live: RuleSet | None = None, *,
                 proxy_policy: proxies.Policy | None = None) -> None:
        self.candidate = candidate
        self.live = live
        self._customers = 0
        # Every segment is listed, so a segment nobody falls into shows as 0.
        self._sizes: dict[str, int] = dict.fromkeys(candidate.segments, 0)
        self._default_only = 0
        self._default_sample: list[str] = []
        self._first: Counter[str] = Counter()
        self._all: Counter[str] = Counter()
        self._claimed_by: dict[str, set[str]] = {r.name: set() for r in candidate.rules}
        self._moves: Counter[tuple[str, str]] = Counter()
        self._unchanged = 0
        self._failed_customers = 0
        self._failures: Counter[str] = Counter()
        self._first_failure: dict[str, tuple[str, str]] = {}
        # Rules that read a protected attribute by name are flagged already.
        self._proxies = proxies.ProxyDetection(
            [r.name for r in candidate.rules if not candidate.protected_reads(r)],
            groups.checked_by(candidate.protected_attributes), proxy_policy)

    def add(self, customer_id: str, context: Mapping[str, Any]) -> None:
        # One activation serves every rule of both sets: they share the same environment.
        activation = ENVIRONMENT.Activation(context)
        self._customers += 1
        matching = self._candidate_matches(customer_id, activation)
        first = matching[0] if matching else None
        segment = first.segment if first else self.candidate.default_segment
        self._sizes[segment] += 1
        self._proxies.add(groups.bands_of_context(context["customer"]),
                          (rule.name for rule in matching))
        if first is None:
            self._default_only += 1
            if len(self._default_sample) < SAMPLE_SIZE:
                self._default_sample.append(customer_id)
        else:
            self._first[first.name] += 1
            for rule in matching:
                self._all[rule.name] += 1
                if rule is not first:
                    self._claimed_by[rule.name].add(first.name)
        if self.live is not None:
            before = _segment_of(self.live, activation)
            if before == segment:
                self._unchanged += 1
            else:
                self._moves[(before, segment)] += 1

    def _candidate_matches(self, customer_id: str, activation: Any) -> list[Rule]:
        # A rule failing on one customer does not hold for them, as the segmenter takes it
        # (RuleSet.deciding_rule); the failure is reported so the rule gets a guard.
        matching: list[Rule] = []
        failed = False
        for rule in self.candidate.rules:
            try:
                if rule.holds(activation):
                    matching.append(rule)
            except RuleEvaluationError as exc:
                failed = True
                self._failures[rule.name] += 1
                # CEL's message (the mismatched types, or a value of the customer's):
                # the report answers an admin, who may read any profile; it is not logged.
                self._first_failure.setdefault(rule.name, (customer_id, exc.detail))
        self._failed_customers += int(failed)
        return matching

    def report(self) -> Report:
        rule_reports = tuple(self._rule_report(rule) for rule in self.candidate.rules)
        moves = None
        if self.live is not None:
            ordered = sorted(self._moves.items(), key=lambda item: (-item[1], item[0]))
            moves = Moves(tuple(Move(a, b, n) for (a, b), n in ordered), self._unchanged)
        failures = tuple(
            RuleFailures(rule.name, self._failures[rule.name], *self._first_failure[rule.name])
            for rule in self.candidate.rules if rule.name in self._first_failure)
        return Report(
            rules_version=self.candidate.version,
            live_version=self.live.version if self.live is not None else None,
            customers=self._customers,
            segment_sizes=dict(self._sizes),
            default_only=DefaultOnly(self._default_only, tuple(self._default_sample)),
            rules=rule_reports,
            protected_rules=tuple(r.name for r in rule_reports if r.protected_reads),
            moves=moves,
            errors=Errors(self._failed_customers, failures),
            proxy_detection=self._proxies.detection())

    def _rule_report(self, rule: Rule) -> RuleReport:
        first, every = self._first[rule.name], self._all[rule.name]
        return RuleReport(
            name=rule.name, segment=rule.segment, line=rule.line,
            first_matches=first, all_matches=every, never_matches=every == 0,
            shadowed=every > 0 and first == 0,
            shadowed_by=tuple(r.name for r in self.candidate.rules
                              if r.name in self._claimed_by[rule.name]),
            reads=rule.reads,
            protected_reads=tuple(self.candidate.protected_reads(rule)))


def _segment_of(rule_set: RuleSet, activation: Any) -> str:
    """The live segment, as the segmenter decides it (RuleSet.deciding_rule)."""
    rule, _failed = rule_set.deciding_rule(activation)
    return rule_set.default_segment if rule is None else rule.segment


def analyse(candidate: RuleSet, contexts: Iterable[tuple[str, Mapping[str, Any]]],
            live: RuleSet | None = None, *,
            proxy_policy: proxies.Policy | None = None) -> Report:
    analysis = Analysis(candidate, live, proxy_policy=proxy_policy)
    for customer_id, context in contexts:
        analysis.add(customer_id, context)
    return analysis.report()
