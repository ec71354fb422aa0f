"""Checks shared by the sections of the routing-table reader (table_*.py); every error
names the file, the line and the entry."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from services.core import durations, topics
from services.core.config_files import ConfigError, unknown_keys

References = list[tuple[str, int | None, str]]  # department, line, entry naming it


def config_duration(value: Any, *, source: str, line: int | None, entry: str,
                    field: str) -> timedelta:
    """A duration of the one grammar (services/core/durations.py), its field named."""
    if not isinstance(value, str):
        raise ConfigError(source, line, entry, f"{field} must be a duration like '4h'")
    try:
        return durations.parse_duration(value)
    except ValueError as exc:
        raise ConfigError(source, line, entry, f"{field}: {exc}") from exc


def check_keys(document: Mapping[str, Any], accepted: tuple[str, ...], source: str,
                line: int | None, entry: str | None) -> None:
    unknown = unknown_keys(document, accepted)
    if unknown:
        raise ConfigError(source, line, entry,
                          f"unknown keys {unknown}; accepted: {', '.join(accepted)}")


def optional(value: Any, empty: Any) -> Any:
    # Only a missing or null entry is empty: `[]` where a mapping belongs is an error.
    return empty if value is None else value


def check_department(name: str, source: str, line: int | None, entry: str) -> None:
    try:
        topics.department_queue(name)
    except ValueError as exc:
        raise ConfigError(source, line, entry, str(exc)) from exc
