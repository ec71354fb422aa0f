"""Reading service levels from the routing table: priority and targets of an entry and
its tiers, the targets per priority, aging and the warning share (what they mean is in
priority.py)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from services.core.config_files import ConfigError, line_of, unknown_keys
from services.router import priority, table_fields

HIGHEST, LOWEST = priority.HIGHEST, priority.LOWEST


def parse_service_levels(document: Mapping[str, Any], *, source: str,
                         entry: str) -> priority.ServiceLevels:
    """`priority`, `first_response_target` and `tiers: {tier: {priority, target}}` of an
    entry (a route or the defaults); all optional."""
    own = _override(document, source=source, entry=entry, where="")
    check_tiers(document, source, entry)
    tiers = document.get("tiers") or {}
    overrides = {}
    for tier, value in tiers.items():
        if tier == "__line__":
            continue
        if tier not in priority.TIERS:
            raise ConfigError(source, line_of(value) or line_of(tiers), entry,
                              f"tiers: {tier!r} is not a tier; tiers are {list(priority.TIERS)}")
        if not isinstance(value, dict):
            raise ConfigError(source, line_of(tiers), entry,
                              f"tiers.{tier} must be a mapping: priority, first_response_target")
        unknown = unknown_keys(value, ("priority", *priority.TARGET_KEYS))
        if unknown:
            raise ConfigError(source, line_of(value), entry, f"tiers.{tier}: unknown keys"
                              f" {unknown}; accepted: priority, {', '.join(priority.TARGET_KEYS)}")
        overrides[tier] = _override(value, source=source, entry=entry, where=f"tiers.{tier}.")
    return priority.ServiceLevels(own, overrides)


def parse_override(document: Mapping[str, Any], *, source: str, entry: str) -> priority.Override:
    return _override(document, source=source, entry=entry, where="")


def _override(document: Mapping[str, Any], *, source: str, entry: str,
              where: str) -> priority.Override:
    line = line_of(document)
    value = document.get("priority")
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                              or not HIGHEST <= value <= LOWEST):
        raise ConfigError(source, line, entry, f"{where}priority must be a whole number from"
                          f" {HIGHEST} (most urgent) to {LOWEST}, not {value!r}")
    targets = [None if document.get(name) is None else table_fields.config_duration(
        document[name], source=source, line=line, entry=entry, field=f"{where}{name}")
        for name in priority.TARGET_KEYS]
    return priority.Override(value, *targets)


def parse_priority_targets(value: Any, *, source: str,
                           line: int | None) -> dict[int, priority.Override]:
    """`priority_targets: {1: {first_response_target: 15m, ...}, ...}`: the targets a
    ticket takes when its priority is changed to that priority; each key optional."""
    entry = "priority_targets"
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(source, line, entry, "priority_targets must map priorities"
                          f" ({HIGHEST}-{LOWEST}) to {{{', '.join(priority.TARGET_KEYS)}}}")
    found = {}
    for key, targets in value.items():
        if key == "__line__":
            continue
        where = line_of(targets) or line_of(value) or line
        number = _priority_key(key)
        if number is None:
            raise ConfigError(source, where, entry, f"{key!r} is not a priority; priorities"
                              f" are whole numbers from {HIGHEST} (most urgent) to {LOWEST}")
        if not isinstance(targets, dict):
            raise ConfigError(source, where, entry, f"priority_targets.{key} must be a"
                              f" mapping: {', '.join(priority.TARGET_KEYS)}")
        unknown = unknown_keys(targets, priority.TARGET_KEYS)
        if unknown:
            raise ConfigError(source, where, entry, f"priority_targets.{key}: unknown keys"
                              f" {unknown}; accepted: {', '.join(priority.TARGET_KEYS)}")
        found[number] = _override(targets, source=source, entry=entry,
                               where=f"priority_targets.{key}.")
    return found


def _priority_key(key: Any) -> int | None:
    # A JSON document's keys are strings: "1" is priority 1 too.
    if isinstance(key, str) and key.isascii() and key.isdigit():
        key = int(key)
    if isinstance(key, bool) or not isinstance(key, int) or not HIGHEST <= key <= LOWEST:
        return None
    return key


def check_tiers(document: Mapping[str, Any], source: str, entry: str) -> None:
    """`tiers`, when given, is a mapping (checked before the entry's other fields)."""
    tiers = document.get("tiers")
    if tiers is not None and not isinstance(tiers, dict):
        raise ConfigError(source, line_of(document), entry,
                          f"tiers must map customer tiers {list(priority.TIERS)} to overrides")


def parse_aging(value: Any, source: str, line: int | None) -> priority.Aging:
    if value is None:
        return priority.DEFAULT_AGING
    if value == "off":
        return priority.Aging(step=None)
    return priority.Aging(table_fields.config_duration(
        value, source=source, line=line, entry="priority_aging", field="priority_aging"))


def parse_warning_share(value: Any, source: str, line: int | None) -> float | None:
    if value is None or value == "off":
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1:
        raise ConfigError(source, line, "warning_share", "warning_share must be a share of"
                          f" each target between 0 and 1 (0.75: at 75%) or 'off', not {value!r}")
    return float(value)
