"""Reading the `departments` section of the routing table: calendars, after hours,
overflow, escalation (what they mean is in routing.py, overflow.py and calendars.py)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from services.core import durations
from services.core.config_files import ConfigError, line_of, unknown_keys
from services.router import calendars, overflow, routing, table_calendars, table_fields

_DEPARTMENT_KEYS = ("calendar", "after_hours", "overflow", "escalation_to",
                    "second_escalation", "description")


def parse_departments(section: Any, source: str, top: int | None,
                      references: table_fields.References,
                      ) -> tuple[dict[str, routing.DepartmentPolicy], dict[str, int | None]]:
    """Each department's policy and the line it is defined on; every department a policy
    hands tickets to is added to `references` (checked against the section later)."""
    if section is None:
        return {}, {}
    if not isinstance(section, dict):
        raise ConfigError(source, top, "departments",
                          "departments must map each department name to its settings")
    policies, lines = {}, {}
    for name, document in section.items():
        if name == "__line__":
            continue
        entry, line = str(name), line_of(document) or line_of(section)
        table_fields.check_department(entry, source, line, entry)
        document = {} if document is None else document
        if not isinstance(document, dict):
            raise ConfigError(source, line, entry, "settings must be a mapping:"
                              f" {', '.join(_DEPARTMENT_KEYS)}")
        table_fields.check_keys(document, _DEPARTMENT_KEYS, source, line, entry)
        calendar = None if document.get("calendar") is None else \
            table_calendars.parse_calendar(document["calendar"], source=source, line=line,
                                           entry=entry)
        route_to = _parse_after_hours(document.get("after_hours"), calendar is not None,
                                      source, line, entry)
        overflow_policy = None if document.get("overflow") is None else \
            parse_overflow(document["overflow"], source=source, line=line, entry=entry)
        escalation = document.get("escalation_to")
        if escalation is not None and not isinstance(escalation, str):
            raise ConfigError(source, line, entry, "escalation_to must be a department name")
        for target in (route_to, escalation):
            if target == entry:
                raise ConfigError(source, line, entry, "a department cannot hand tickets"
                                  " to itself")
        references.extend((target, line, entry) for target in
                          (route_to, escalation, overflow_policy and overflow_policy.to)
                          if target)
        second = _parse_second_escalation(document.get("second_escalation"), source, line,
                                          entry)
        if second is not None and second.to is not None:
            references.append((second.to, line, entry))
        policies[entry] = routing.DepartmentPolicy(calendar, route_to, overflow_policy,
                                                   escalation, second)
        lines[entry] = line
    return policies, lines


def _parse_after_hours(value: Any, has_calendar: bool, source: str, line: int | None,
                       entry: str) -> str | None:
    if value is None:
        return None
    if not has_calendar:
        raise ConfigError(source, line, entry, "after_hours needs a calendar: without one"
                          " the department is always open")
    if value == "pause":
        return None
    route_to = value.get("route_to") if isinstance(value, dict) else None
    if not isinstance(route_to, str) or set(value) - {"route_to", "__line__"}:
        raise ConfigError(source, line, entry, "after_hours must be 'pause' or"
                          " {route_to: <department>}")
    return route_to


def _parse_second_escalation(value: Any, source: str, line: int | None,
                             entry: str) -> routing.SecondEscalation | None:
    if value is None:
        return None
    if not isinstance(value, dict) or "after" not in value \
            or set(value) - {"after", "to", "__line__"}:
        raise ConfigError(source, line, entry, "second_escalation must be {after: <duration>,"
                          " to: <department>} (without `to`: the ticket is flagged only)")
    to = value.get("to")
    if to is not None and (not isinstance(to, str) or to == entry):
        raise ConfigError(source, line, entry, "second_escalation.to must be another"
                          " department")
    return routing.SecondEscalation(table_fields.config_duration(
        value["after"], source=source, line=line, entry=entry,
        field="second_escalation.after"), to)


def parse_overflow(document: Any, *, source: str, line: int | None,
                   entry: str) -> overflow.OverflowPolicy:
    """{to, max_backlog, max_lag, max_predicted_first_response, resume_below}; `to` and at
    least one maximum are required."""
    line = line_of(document) or line

    def fail(problem: str) -> ConfigError:
        return ConfigError(source, line, entry, f"overflow: {problem}")

    if not isinstance(document, dict):
        raise fail("must be a mapping with `to` and at least one maximum")
    accepted = {"to", "max_backlog", "max_lag", "max_predicted_first_response",
                "resume_below"}
    unknown = unknown_keys(document, accepted)
    if unknown:
        raise fail(f"unknown keys {unknown}; accepted: {sorted(accepted)}")
    target = document.get("to")
    if not isinstance(target, str):
        raise fail("`to` must name the department that takes the overflow")
    counts = {}
    for key in ("max_backlog", "max_lag"):
        value = document.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or not 1 <= value <= overflow.LARGEST_MAXIMUM):
            raise fail(f"{key} must be a whole number from 1 to"
                       f" {overflow.LARGEST_MAXIMUM:,}, not {value!r}")
        counts[key] = value
    predicted = document.get("max_predicted_first_response")
    max_predicted = None if predicted is None else table_fields.config_duration(
        predicted, source=source, line=line, entry=entry,
        field="overflow.max_predicted_first_response")
    if max_predicted is None and not any(counts.values()):
        raise fail("give at least one of max_backlog, max_lag, max_predicted_first_response")
    resume = document.get("resume_below", 0.8)
    if isinstance(resume, bool) or not isinstance(resume, int | float) or not 0 < resume <= 1:
        raise fail(f"resume_below must be a fraction above 0 and at most 1, not {resume!r}")
    return overflow.OverflowPolicy(target, counts["max_backlog"], counts["max_lag"],
                                   max_predicted, float(resume))


def check_calendars_reach(policies: Mapping[str, routing.DepartmentPolicy],
                           lines: Mapping[str, int | None], longest: timedelta,
                           source: str) -> None:
    """A ticket can end in any department (after hours, overflow, escalation): each
    calendar must fit the longest target, and the department's own second escalation
    (counted in its hours from a breach), or no deadline would be found for them."""
    for department, policy in policies.items():
        if policy.calendar is None:
            continue
        reach = calendars.guaranteed_business_time(policy.calendar)
        second = policy.second_escalation
        what, needed = ("second_escalation.after", second.after) \
            if second is not None and second.after > longest else ("longest target", longest)
        if needed > reach:
            raise ConfigError(source, lines[department], department, "calendar: opens too"
                              f" little for the {what},"
                              f" {durations.format_duration(needed)}: ten years of its"
                              f" opening hours give at least"
                              f" {durations.format_duration(reach)}")
