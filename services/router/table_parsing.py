"""Reading a routing table: the YAML document checked entry by entry, with errors that
name the file, the line and the entry (the decisions themselves are in routing.py)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any

from services.core import conditions, durations, topics
from services.core.config_files import ConfigError, line_of
from services.router import calendars, overflow, priority
from services.router.routing import (
    ENVIRONMENT,
    DepartmentPolicy,
    Refinement,
    RefinementError,
    Route,
    RoutingTable,
    SecondEscalation,
)

_TOP_KEYS = ("version", "fallback_department", "priority_aging", "warning_share",
             "priority_targets", "defaults", "routes", "departments")
_ROUTE_KEYS = ("segment", "department", "priority", *priority.TARGET_KEYS, "tiers",
               "refinements", "description")
_REFINEMENT_KEYS = ("name", "when", "department", "priority", *priority.TARGET_KEYS,
                    "description")
_DEPARTMENT_KEYS = ("calendar", "after_hours", "overflow", "escalation_to",
                    "second_escalation", "description")
# Every refinement must evaluate on these, for every tier: a ticket with nothing optional
# set, and one with everything set but no attributes.
PROBE_TICKETS: tuple[dict[str, Any], ...] = (
    {"kind": None, "channel": "email", "language": None, "attributes": {}},
    {"kind": "complaint", "channel": "web", "language": "nl", "attributes": {}})

_References = list[tuple[str, int | None, str]]  # department, line, entry naming it


def parse_table(document: Mapping[str, Any], *, source: str, version: str) -> RoutingTable:
    """Validate a routing file already read as YAML (with `__line__` marks).

    Department names must be valid queue names. When the file has a `departments`
    section, every department it names anywhere must be defined there (a typo in an
    overflow target is an error, not a new queue); without one, every department is
    open 24/7 and never overflows. Overflow chains must not loop. Durations are at most
    366 days, and every calendar must give the longest first-response target within
    the span a deadline is searched in."""
    top = line_of(document)
    _check_keys(document, _TOP_KEYS, source, top, None)
    fallback = document.get("fallback_department")
    if not isinstance(fallback, str):
        raise ConfigError(source, top, "fallback_department",
                          "a fallback department is required (a department name)")
    references: _References = [(fallback, top, "fallback_department")]
    defaults = _optional(document.get("defaults"), {})
    if not isinstance(defaults, dict):
        raise ConfigError(source, top, "defaults", "defaults must be a mapping: priority,"
                          " first_response_target, tiers")
    _check_keys(defaults, ("priority", *priority.TARGET_KEYS, "tiers"), source,
                line_of(defaults), "defaults")
    _check_tiers(defaults, source, "defaults")
    entries = document.get("routes")
    if not isinstance(entries, list) or not entries:
        raise ConfigError(source, top, "routes",
                          "routes must be a non-empty list of {segment, department}")
    routes: dict[str, Route] = {}
    refinement_names: set[str] = set()
    for position, entry in enumerate(entries, start=1):
        route = _parse_route(entry, position, source, references)
        if route.segment in routes:
            raise ConfigError(source, line_of(entry), route.segment,
                              f"segment {route.segment!r} is routed twice")
        for refinement in route.refinements:
            if refinement.name in refinement_names:
                raise ConfigError(source, refinement.line, refinement.name,
                                  "two refinements have this name")
            refinement_names.add(refinement.name)
        routes[route.segment] = route
    section = document.get("departments")
    policies, lines = _parse_departments(section, source, top, references)
    for department, line, entry in references:
        _check_department(department, source, line, entry)
        if section is not None and department not in policies:
            raise ConfigError(source, line, entry, f"department {department!r} is not"
                              " defined under departments")
    cycle = overflow.find_cycle({name: policy.overflow_policy.to
                                 for name, policy in policies.items() if policy.overflow_policy})
    if cycle:
        raise ConfigError(source, lines[cycle[0]], cycle[0],
                          f"overflow goes round in a circle: {' -> '.join(cycle)}")
    levels = priority.parse_service_levels(defaults, source=source, entry="defaults")
    by_priority = priority.parse_priority_targets(document.get("priority_targets"),
                                                  source=source, line=top)
    _check_calendars_reach(policies, lines, _longest_target(
        routes, levels, by_priority.values()), source)
    return RoutingTable(
        version=version, routes=routes, fallback_department=fallback, defaults=levels,
        department_policies=policies, priority_targets=by_priority,
        aging=_parse_aging(document.get("priority_aging"), source, top),
        warning_share=_parse_warning_share(document.get("warning_share"), source, top))


def _longest_target(routes: Mapping[str, Route], defaults: priority.ServiceLevels,
                    by_priority: Iterable[priority.Override]) -> timedelta:
    overrides = [defaults.own, *defaults.tiers.values(), *by_priority]
    for route in routes.values():
        overrides += [route.service.own, *route.service.tiers.values(),
                      *(refinement.service for refinement in route.refinements)]
    return max([priority.BUILT_IN.first_response_target,
                *(target for override in overrides for target in override.targets)])


def _check_calendars_reach(policies: Mapping[str, DepartmentPolicy],
                           lines: Mapping[str, int | None], longest: timedelta,
                           source: str) -> None:
    """A ticket can end in any department (after hours, overflow, escalation): each
    calendar must fit the longest target, or routing would find no deadline."""
    for department, policy in policies.items():
        if policy.calendar is None:
            continue
        reach = calendars.guaranteed_business_time(policy.calendar)
        if longest > reach:
            raise ConfigError(source, lines[department], department, "calendar: opens too"
                              " little for the longest target,"
                              f" {durations.format_duration(longest)}: ten years of its"
                              f" opening hours give {durations.format_duration(reach)}")


def _parse_route(entry: Any, position: int, source: str, references: _References) -> Route:
    line = line_of(entry)
    label = f"routes[{position}]"
    if not isinstance(entry, dict):
        raise ConfigError(source, line, label,
                          "each route must be a mapping with segment and department")
    _check_keys(entry, _ROUTE_KEYS, source, line, label)
    segment, department = entry.get("segment"), entry.get("department")
    if not isinstance(segment, str) or not segment:
        raise ConfigError(source, line, str(segment or label),
                          "segment must be a non-empty string")
    if not isinstance(department, str):
        raise ConfigError(source, line, segment, "department must be a department name")
    references.append((department, line, segment))
    _check_tiers(entry, source, segment)
    documents = _optional(entry.get("refinements"), [])
    if not isinstance(documents, list):
        raise ConfigError(source, line, segment, "refinements must be a list; the first"
                          " whose `when` holds is used")
    refinements = tuple(_parse_refinement(document, f"{segment}.refinements[{index}]",
                                          source, references)
                        for index, document in enumerate(documents, start=1))
    return Route(segment, department,
                 priority.parse_service_levels(entry, source=source, entry=segment),
                 refinements)


def _parse_refinement(document: Any, label: str, source: str,
                      references: _References) -> Refinement:
    line = line_of(document)
    if not isinstance(document, dict):
        raise ConfigError(source, line, label, "a refinement is a mapping: name, when,"
                          " department, priority, first_response_target")
    _check_keys(document, _REFINEMENT_KEYS, source, line, label)
    name, expression = document.get("name"), document.get("when")
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(source, line, label, "name is required")
    expression, compiled = conditions.compile_boolean(ENVIRONMENT, expression, source=source,
                                                      line=line, name=name)
    department = document.get("department")
    if department is not None and not isinstance(department, str):
        raise ConfigError(source, line, name, "department must be a department name")
    service = priority.parse_override(document, source=source, entry=name)
    if department is None and service == priority.NO_OVERRIDE:
        raise ConfigError(source, line, name, "a refinement must set a department, a"
                          " priority or a first_response_target")
    if department is not None:
        references.append((department, line, name))
    refinement = Refinement(name, expression, compiled, department, service, line)
    for tier in priority.TIERS:
        for ticket in PROBE_TICKETS:
            try:
                refinement.holds(ENVIRONMENT.Activation({"ticket": ticket, "tier": tier}))
            except RefinementError as exc:
                raise ConfigError(source, line, name, f"fails on a probe ticket {ticket}:"
                                  f" {exc} (guard fields that may be null or missing, e.g."
                                  " `has(ticket.attributes.order)`)") from exc
    return refinement


def _parse_departments(section: Any, source: str, top: int | None, references: _References,
                       ) -> tuple[dict[str, DepartmentPolicy], dict[str, int | None]]:
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
        _check_department(entry, source, line, entry)
        document = {} if document is None else document
        if not isinstance(document, dict):
            raise ConfigError(source, line, entry, "settings must be a mapping:"
                              f" {', '.join(_DEPARTMENT_KEYS)}")
        _check_keys(document, _DEPARTMENT_KEYS, source, line, entry)
        calendar = None if document.get("calendar") is None else calendars.parse_calendar(
            document["calendar"], source=source, line=line, entry=entry)
        route_to = _parse_after_hours(document.get("after_hours"), calendar is not None,
                                      source, line, entry)
        overflow_policy = None if document.get("overflow") is None else \
            overflow.parse_policy(document["overflow"], source=source, line=line, entry=entry)
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
        policies[entry] = DepartmentPolicy(calendar, route_to, overflow_policy, escalation,
                                           second)
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


def _parse_warning_share(value: Any, source: str, line: int | None) -> float | None:
    if value is None or value == "off":
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1:
        raise ConfigError(source, line, "warning_share", "warning_share must be a share of"
                          f" each target between 0 and 1 (0.75: at 75%) or 'off', not {value!r}")
    return float(value)


def _parse_second_escalation(value: Any, source: str, line: int | None,
                             entry: str) -> SecondEscalation | None:
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
    return SecondEscalation(calendars.config_duration(
        value["after"], source=source, line=line, entry=entry,
        field="second_escalation.after"), to)


def _parse_aging(value: Any, source: str, line: int | None) -> priority.Aging:
    if value is None:
        return priority.DEFAULT_AGING
    if value == "off":
        return priority.Aging(step=None)
    return priority.Aging(calendars.config_duration(
        value, source=source, line=line, entry="priority_aging", field="priority_aging"))


def _check_keys(document: Mapping[str, Any], accepted: tuple[str, ...], source: str,
                line: int | None, entry: str | None) -> None:
    unknown = sorted(set(document) - {*accepted, "__line__"})
    if unknown:
        raise ConfigError(source, line, entry,
                          f"unknown keys {unknown}; accepted: {', '.join(accepted)}")


def _optional(value: Any, empty: Any) -> Any:
    # Only a missing or null entry is empty: `[]` where a mapping belongs is an error.
    return empty if value is None else value


def _check_tiers(document: Mapping[str, Any], source: str, entry: str) -> None:
    tiers = document.get("tiers")
    if tiers is not None and not isinstance(tiers, dict):
        raise ConfigError(source, line_of(document), entry,
                          f"tiers must map customer tiers {list(priority.TIERS)} to overrides")


def _check_department(name: str, source: str, line: int | None, entry: str) -> None:
    try:
        topics.department_queue(name)
    except ValueError as exc:
        raise ConfigError(source, line, entry, str(exc)) from exc
