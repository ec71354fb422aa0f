"""Segment rules: an ordered list of CEL expressions; the first that holds wins.

Pure decision code. Rules are compiled once when a rule set is loaded; a ticket's
evaluation context is built once and shared by every rule. A rule set is checked before
it can serve: each expression must compile, be boolean, read only fields the context has
(rules_file), and evaluate without error both for a known customer and for a customer
the store does not know (so a rule reading `customer.age_years` must guard against
null). A rule that still fails on some ticket's data at run time does not hold for that
ticket, everywhere rules are read (the segmenter, the analysis of a rule set, the routing
simulator): the ticket goes on to the next rule, and the decision names the rules that
failed.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cel_expr_python import cel

from services.core import conditions, topics

_T = cel.Type
# The records are maps to CEL (message types would need protobuf descriptors, and each
# ticket's context made into messages): it checks no field name, so rules_file checks
# the fields a rule reads against context.RECORD_FIELDS.
_MAP = _T.Map(_T.STRING, _T.DYN)
VARIABLES = {"customer": _MAP, "features": _MAP, "tier": _T.STRING, "ticket": _MAP}
ENVIRONMENT = cel.NewEnv(variables=VARIABLES)

# Protected in every rule set: a rule file's `protected_attributes` adds to these, never
# takes one away (protected_in_force).
DEFAULT_PROTECTED = ("customer.gender", "customer.birth_date", "customer.age_years",
                     "customer.socio_economic_band")
# What rules can read of a customer that is personal data, or may hold it (the free-form
# attributes an import brings): its values never travel with a ticket, whatever a rule
# set's `protected_attributes` (what it withholds and flags besides; not parity groups,
# which PARITY_ATTRIBUTES sets, nor what proxy detection bands: groups.SOURCE_PATHS) say.
PERSONAL = (*DEFAULT_PROTECTED, "customer.attributes")
# A segment is named as a department is (tickets.Name): both are Kafka topic parts,
# label values and database keys.
SEGMENT_NAME = topics.DEPARTMENT_NAME
Context = Mapping[str, Any]


class RuleEvaluationError(RuntimeError):
    """A rule failed on a ticket's data (it does not hold for that ticket: see
    RuleSet.decide).

    Its text names the rule and the kind of failure (conditions.ConditionFailed.kind)
    only: it is logged and counted, where personal data must never go. `detail`, CEL's
    message, may repeat the customer's values (a key not found, a pattern taken from the
    data): only for an admin's answer or a rule file's check."""

    def __init__(self, rule: str, kind: str, detail: str) -> None:
        self.rule = rule
        self.kind = kind
        self.detail = detail
        super().__init__(f"segment rule {rule!r} failed ({kind})")


@dataclass(frozen=True)
class Rule:
    name: str
    segment: str
    expression: str
    line: int | None
    reads: tuple[str, ...]
    compiled: Any  # cel Expression

    def holds(self, activation: Any) -> bool:
        try:
            return conditions.holds(self.compiled, activation)
        except conditions.ConditionFailed as exc:
            # Not chained: a traceback printed would show CEL's message, and the values.
            raise RuleEvaluationError(self.name, exc.kind, str(exc)) from None


# What `decided_by` holds for a path whose value must not travel with the ticket.
WITHHELD = "[withheld]"


# The rule a decision names when no rule held (the default segment's): a name no rule
# of a set may take (rules_file), so that it always means the default.
DEFAULT_RULE = "default"


@dataclass(frozen=True)
class Decision:
    segment: str
    rule: str  # the rule's name, or DEFAULT_RULE
    rules_version: str
    # The paths the deciding rule read, each with its value when that value may travel
    # with the ticket to department topics (see `ticket_safe_values`), else WITHHELD.
    decided_by: Mapping[str, Any]
    # The rules before the deciding one that failed on this ticket's data, in order: they
    # did not hold for it.
    failed: tuple[RuleEvaluationError, ...] = ()


@dataclass(frozen=True)
class RuleSet:
    version: str
    source: str
    rules: tuple[Rule, ...]
    default_segment: str
    # The protected attributes in force (protected_in_force): DEFAULT_PROTECTED and those
    # the rule file adds, whatever it lists. What is withheld from tickets and the reads an
    # analysis flags follow it; proxy detection checks those of groups.SOURCE_PATHS (the
    # banded ones, all among the defaults), a path the file adds having no bands.
    protected_attributes: tuple[str, ...] = DEFAULT_PROTECTED

    def __post_init__(self) -> None:
        # Here, not in the loader: no rule set, however made, can protect less.
        object.__setattr__(self, "protected_attributes",
                           protected_in_force(self.protected_attributes))

    def decide(self, context: Context) -> Decision:
        activation = ENVIRONMENT.Activation(context)
        rule, failed = self.deciding_rule(activation)
        if rule is None:
            return Decision(self.default_segment, DEFAULT_RULE, self.version, decided_by={},
                            failed=failed)
        return Decision(rule.segment, rule.name, self.version,
                        decided_by=self.ticket_safe_values(rule.reads, context), failed=failed)

    def deciding_rule(self, activation: Any
                      ) -> tuple[Rule | None, tuple[RuleEvaluationError, ...]]:
        """The first rule that holds (None: the default segment decides), and the rules
        before it that failed on the data. A rule failing on the data does not hold, as
        a ticket from a customer without a birth date is not one for a rule on age: the
        ticket is segmented by the rules that can read it, never held up by one that
        cannot."""
        failed: list[RuleEvaluationError] = []
        for rule in self.rules:
            try:
                if rule.holds(activation):
                    return rule, tuple(failed)
            except RuleEvaluationError as failure:
                failed.append(failure)
        return None, tuple(failed)

    @property
    def segments(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys([*(r.segment for r in self.rules), self.default_segment]))

    def protected_reads(self, rule: Rule) -> list[str]:
        return [path for path in rule.reads if _is_protected(path, self.protected_attributes)]

    @functools.cached_property
    def _withheld(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((*PERSONAL, *self.protected_attributes)))

    def ticket_safe_values(self, paths: Sequence[str], context: Context) -> dict[str, Any]:
        """The values at `paths` that may be copied into a ticket: single values that are
        neither personal (PERSONAL) nor protected by the rule set. The others, and maps or
        lists (a whole profile), are named by their path only, their value WITHHELD:
        tickets reach department topics, which must carry no personal data."""
        return {path: value if _is_single(value)
                and not _is_protected(path, self._withheld) else WITHHELD
                for path, value in values_read(paths, context).items()}


def protected_in_force(listed: Iterable[str]) -> tuple[str, ...]:
    """The protected attributes of a rule set whose file lists `listed`: DEFAULT_PROTECTED,
    then those it adds. An empty list protected nothing before: no read flagged, no proxy
    sought, while the domain promises rules on protected attributes are flagged."""
    return tuple(dict.fromkeys((*DEFAULT_PROTECTED, *listed)))


@functools.lru_cache(maxsize=4096)
def _is_protected(path: str, protected: tuple[str, ...]) -> bool:
    # A rule reading a whole map (`customer`) may read anything in it. Remembered: a rule
    # set's paths and protected attributes are few, and asked about on every decision.
    return any(path == p or path.startswith(p + ".") or p.startswith(path + ".")
               for p in protected)


def _is_single(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def values_read(paths: Sequence[str], context: Context) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for path in paths:
        value: Any = context
        for part in path.split("."):
            value = value.get(part) if isinstance(value, Mapping) else None
        found[path] = value
    return found
