"""Reading a segment rule set from its YAML file (or uploaded text)."""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.core import conditions, config_files, config_store, tickets, topics
from services.core.config_files import (
    ConfigError,
    key_line,
    line_of,
    unknown_key_line,
    unknown_keys,
)
from services.segmenter import context, rule_reads, rules

# The most rules a set may hold: each ticket's segment is decided by the first that holds,
# and each rule is compiled, then checked on the probes, when a set is put in force.
MAX_RULES = 1000
# What `protected_attributes` may name: a field of the customer rules read, or one of its
# attributes by a name a rule can read it by (`customer.attributes.club`).
_CUSTOMER_PATHS = context.field_paths("customer")
_ATTRIBUTE_PATH = re.compile(r"customer\.attributes\.[A-Za-z_][A-Za-z0-9_]{0,63}")


def parse(text: str, *, source: str) -> rules.RuleSet:
    document = config_files.load_yaml(source, text)
    today = datetime.now(UTC).date()
    return parse_document(
        document, source=source,
        version=config_files.file_version(source, document, text),
        probes=context.probes(today), largest=context.largest(today))


def load(path: Path) -> rules.RuleSet:
    return parse(config_files.read_text(path), source=str(path))


async def in_force(sessions: async_sessionmaker[AsyncSession], path: Path) -> rules.RuleSet:
    """The segment rules in force, for a command outside the services: the store's
    version, or the file's before any was kept (config_store.in_force_text)."""
    text, source = await config_store.in_force_text(sessions, config_store.SEGMENT_RULES, path)
    return parse(text, source=source)


def parse_document(document: Mapping[str, Any], *, source: str, version: str,
                   probes: Sequence[rules.Context],
                   largest: Sequence[rules.Context] = ()) -> rules.RuleSet:
    """Validate and compile a rule file already read as YAML (with `__line__` marks).

    `probes` are contexts every rule must evaluate on without error (a known customer, an
    unknown one); a rule that fails on them would fail on real tickets. On the `largest`
    contexts (context.largest) a rule must not go past CEL's iteration budget, nor cost
    past conditions.Costs' caps of CPU.
    """
    allowed = ("default_segment", "protected_attributes", "rules", "version")
    unknown = unknown_keys(document, allowed)
    if unknown:
        raise ConfigError(source, unknown_key_line(document, allowed), None,
                          f"unknown keys {unknown}; accepted: {list(allowed)}")
    default = document.get("default_segment")
    if default is None:
        raise ConfigError(source, key_line(document, "default_segment"), "default_segment",
                          "a default segment is required (a segment name), so that no"
                          " ticket is left unclaimed")
    if not isinstance(default, str) or not rules.SEGMENT_NAME.fullmatch(default):
        raise ConfigError(source, key_line(document, "default_segment"), "default_segment",
                          f"default_segment must be a segment name: {topics.NAME_RULE},"
                          f" not {_shown(default)}")
    # What the file adds to rules.DEFAULT_PROTECTED (RuleSet.protected_attributes).
    protected = document.get("protected_attributes", [])
    if not isinstance(protected, list) or not all(isinstance(p, str) for p in protected):
        raise ConfigError(source, key_line(document, "protected_attributes"),
                          "protected_attributes",
                          "protected_attributes must be a list of paths like customer.gender")
    for path in protected:
        if path not in _CUSTOMER_PATHS and not _ATTRIBUTE_PATH.fullmatch(path):
            raise ConfigError(source, key_line(document, "protected_attributes"),
                              "protected_attributes",
                              f"protected_attributes: {path!r} is not a customer field"
                              f" rules can read; accepted: {', '.join(_CUSTOMER_PATHS)}, or"
                              " customer.attributes.<name> (at most 64 letters, digits or"
                              " '_', not starting with a digit)")
    entries = document.get("rules")
    if not isinstance(entries, list):
        raise ConfigError(source, key_line(document, "rules"), "rules",
                          "rules must be a list (it may be empty)")
    if len(entries) > MAX_RULES:
        raise ConfigError(source, line_of(entries[MAX_RULES]) or key_line(document, "rules"),
                          "rules",
                          f"{len(entries):,} rules, at most {MAX_RULES:,} (the first rule"
                          " that holds decides: merge rules into fewer, wider conditions)")
    compiled: list[rules.Rule] = []
    names: set[str] = set()
    for position, entry in enumerate(entries, start=1):
        rule = _compile_rule(entry, position, source)
        if rule.name in names:
            raise ConfigError(source, rule.line, rule.name, "two rules have this name")
        names.add(rule.name)
        compiled.append(rule)
    rule_set = rules.RuleSet(version=version, source=source, rules=tuple(compiled),
                       default_segment=default, protected_attributes=tuple(protected))
    # Each context made an activation once, for every rule (as RuleSet.decide does).
    checked = [(probe, rules.ENVIRONMENT.Activation(probe)) for probe in probes]
    for_budget = [(probe, rules.ENVIRONMENT.Activation(probe)) for probe in largest]
    costs = conditions.Costs(source)
    for rule in compiled:
        # The largest first: a rule too costly is refused before the many probes.
        for probe, activation in for_budget:
            try:
                with costs.evaluating():
                    rule.holds(activation)
            except rules.RuleEvaluationError as exc:
                if conditions.past_budget(exc.detail):  # else: the run time's to take
                    raise ConfigError(
                        source, rule.line, rule.name,
                        f"fails for {context.describe_probe(probe)}: {exc.detail}"
                        f" ({conditions.PAST_BUDGET_HINT})") from exc
        if for_budget:
            costs.check(rule.line, rule.name, context.describe_probe(for_budget[0][0]))
        for probe, activation in checked:
            try:
                rule.holds(activation)
            except rules.RuleEvaluationError as exc:
                raise ConfigError(source, rule.line, rule.name,
                                  f"fails for {context.describe_probe(probe)}: {exc.detail}"
                                  f" ({_GUARD_HINTS.get(exc.kind, _NULL_HINT)})") from exc
    return rule_set


# What an admin is told of a rule failing on a probe. Every field a rule reads of the
# context's records is one each has (_read_fields): a key not found is an attribute a
# customer or ticket may lack, which has() guards; anything else, a field that may be
# null.
_NULL_HINT = "guard fields that may be null, e.g. `customer.age_years != null && ...`"
_GUARD_HINTS = {"NOT_FOUND": "an attribute a customer or ticket may lack: guard it with"
                             " has(), e.g. `has(customer.attributes.club) && ...`"}


def _compile_rule(entry: Any, position: int, source: str) -> rules.Rule:
    line = line_of(entry)
    label = f"rules[{position}]"
    if not isinstance(entry, dict):
        raise ConfigError(source, line, label, "each rule is a mapping: name, segment, when")
    unknown = unknown_keys(entry, ("name", "segment", "when", "description"))
    if unknown:
        raise ConfigError(source, line, label,
                          f"unknown keys {unknown}; accepted: name, segment, when, description")
    name = entry.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > tickets.MAX_RULE_NAME:
        raise ConfigError(source, line, label,
                          f"name is required: text of at most {tickets.MAX_RULE_NAME} characters")
    if name == rules.DEFAULT_RULE:
        raise ConfigError(source, line, label,
                          f"name {rules.DEFAULT_RULE!r} is the default segment's (what a"
                          " decision names when no rule held): name the rule otherwise")
    segment = entry.get("segment")
    if not isinstance(segment, str) or not rules.SEGMENT_NAME.fullmatch(segment):
        raise ConfigError(source, line, name, "segment must be a lower-case name"
                          " (letters, digits, '_' or '-')")
    expression = entry.get("when")
    expression, program = conditions.compile_boolean(rules.ENVIRONMENT, expression, source=source,
                                                      line=line, name=name)
    return rules.Rule(name=name, segment=segment, expression=expression, line=line,
                      reads=_read_fields(expression, source, line, name), compiled=program)


def _read_fields(expression: str, source: str, line: int | None, name: str
                 ) -> tuple[str, ...]:
    """What the rule reads (rule_reads.referenced_paths); ConfigError naming the first
    field it reads that the context's records do not have, or when what it reads cannot
    be told. CEL takes the records as maps of any keys, so `has(customer.agee_years)`
    compiles and is false for every customer: the rule would never hold, silently."""
    try:
        reads = rule_reads.referenced_paths(expression)
    except rule_reads.Unreadable as exc:
        raise ConfigError(source, line, name, str(exc)) from None
    for path in reads:
        unknown = context.unknown_field(path)
        if unknown is None:
            continue
        record, _, field = unknown.partition(".")
        near = difflib.get_close_matches(field, context.RECORD_FIELDS[record], n=1)
        meant = f" (did you mean {record}.{near[0]}?)" if near else ""
        raise ConfigError(source, line, name,
                          f"{unknown} is not a field rules can read{meant}: guarded by"
                          " has() or not, the rule would never hold; accepted:"
                          f" {context.accepted_fields(record)}")
    return reads


def _shown(value: object, most: int = 80) -> str:
    """A value an error quotes: as written (without the loader's line marks), cut short."""
    if isinstance(value, dict):
        value = config_files.without_lines(value)
    text = repr(value)
    return text if len(text) <= most else text[:most] + "..."
