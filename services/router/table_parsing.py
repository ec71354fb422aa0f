"""Reading a routing table: the YAML document checked entry by entry, with errors that
name the file, the line and the entry (the decisions themselves are in routing.py)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from services.core import conditions, tickets, topics
from services.core.config_files import ConfigError, key_line, line_of, unknown_key_line
from services.router import (
    overflow,
    priority,
    table_departments,
    table_fields,
    table_service_levels,
)
from services.router.routing import (
    ENVIRONMENT,
    Refinement,
    RefinementError,
    Route,
    RoutingTable,
    overrides_of,
)

_TOP_KEYS = ("version", "fallback_department", "priority_aging", "warning_share",
             "priority_targets", "defaults", "routes", "departments")
_ROUTE_KEYS = ("segment", "department", "priority", *priority.TARGET_KEYS, "tiers",
               "refinements", "description")
_REFINEMENT_KEYS = ("name", "when", "department", "priority", *priority.TARGET_KEYS,
                    "description")
# Every refinement must evaluate on these, for every tier (what segment rules are checked
# on too: tickets.probe_tickets), each made an activation once; and must not go past
# CEL's iteration budget on the largest ticket (tickets.largest_ticket).
_PROBED_AT = datetime(2000, 1, 1, tzinfo=UTC)
PROBES: tuple[tuple[dict[str, Any], str, Any], ...] = tuple(
    (view, tier, ENVIRONMENT.Activation({"ticket": view, "tier": tier}))
    for tier in priority.TIERS
    for view in map(tickets.rule_view, tickets.probe_tickets(_PROBED_AT)))
LARGEST: tuple[tuple[dict[str, Any], str, Any], ...] = tuple(
    (view, tier, ENVIRONMENT.Activation({"ticket": view, "tier": tier}))
    for tier in priority.TIERS for view in [tickets.rule_view(tickets.largest_ticket(_PROBED_AT))])


def parse_table(document: Mapping[str, Any], *, source: str, version: str) -> RoutingTable:
    """Validate a routing file already read as YAML (with `__line__` marks).

    Department names must be valid queue names. When the file has a `departments`
    section, every department it names anywhere must be defined there (a typo in an
    overflow target is an error, not a new queue); without one, every department is
    open 24/7 and never overflows. Overflow chains must not loop. Durations are at most
    366 days, and every calendar must give the longest first-response target within
    the span a deadline is searched in."""
    table_fields.check_keys(document, _TOP_KEYS, source, unknown_key_line(document, _TOP_KEYS),
                            None)
    fallback = document.get("fallback_department")
    if not isinstance(fallback, str):
        raise ConfigError(source, key_line(document, "fallback_department"),
                          "fallback_department",
                          "a fallback department is required (a department name)")
    references: table_fields.References = [
        (fallback, key_line(document, "fallback_department"), "fallback_department")]
    costs = conditions.Costs(source)
    defaults = table_fields.optional(document.get("defaults"), {})
    if not isinstance(defaults, dict):
        raise ConfigError(source, key_line(document, "defaults"), "defaults",
                          "defaults must be a mapping: priority, first_response_target, tiers")
    table_fields.check_keys(defaults, ("priority", *priority.TARGET_KEYS, "tiers"), source,
                line_of(defaults), "defaults")
    table_service_levels.check_tiers(defaults, source, "defaults")
    entries = document.get("routes")
    if not isinstance(entries, list) or not entries:
        raise ConfigError(source, key_line(document, "routes"), "routes",
                          "routes must be a non-empty list of {segment, department}")
    routes: dict[str, Route] = {}
    refinement_names: set[str] = set()
    for position, entry in enumerate(entries, start=1):
        route = _parse_route(entry, position, source, references, costs)
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
    policies, lines = table_departments.parse_departments(
        section, source, key_line(document, "departments"), references)
    for department, line, entry in references:
        table_fields.check_department(department, source, line, entry)
        if section is not None and department not in policies:
            raise ConfigError(source, line, entry, f"department {department!r} is not"
                              " defined under departments")
    cycle = overflow.find_cycle({name: policy.overflow_policy.to
                                 for name, policy in policies.items() if policy.overflow_policy})
    if cycle:
        raise ConfigError(source, lines[cycle[0]], cycle[0],
                          f"overflow goes round in a circle: {' -> '.join(cycle)}")
    levels = table_service_levels.parse_service_levels(defaults, source=source, entry="defaults")
    by_priority = table_service_levels.parse_priority_targets(
        document.get("priority_targets"), source=source,
        line=key_line(document, "priority_targets"))
    table_departments.check_calendars_reach(policies, lines, _longest_target(
        routes, levels, by_priority.values()), source)
    return RoutingTable(
        version=version, routes=routes, fallback_department=fallback, defaults=levels,
        department_policies=policies, priority_targets=by_priority,
        aging=table_service_levels.parse_aging(document.get("priority_aging"), source,
                                               key_line(document, "priority_aging")),
        warning_share=table_service_levels.parse_warning_share(
            document.get("warning_share"), source, key_line(document, "warning_share")))


def _longest_target(routes: Mapping[str, Route], defaults: priority.ServiceLevels,
                    by_priority: Iterable[priority.Override]) -> timedelta:
    overrides = overrides_of(routes.values(), defaults, by_priority)
    return max([priority.BUILT_IN.first_response_target,
                *(target for override in overrides for target in override.targets)])


def _parse_route(entry: Any, position: int, source: str,
                 references: table_fields.References, costs: conditions.Costs) -> Route:
    line = line_of(entry)
    label = f"routes[{position}]"
    if not isinstance(entry, dict):
        raise ConfigError(source, line, label,
                          "each route must be a mapping with segment and department")
    table_fields.check_keys(entry, _ROUTE_KEYS, source, line, label)
    segment, department = entry.get("segment"), entry.get("department")
    if not isinstance(segment, str) or not topics.DEPARTMENT_NAME.fullmatch(segment):
        raise ConfigError(source, line, str(segment or label),
                          "segment must be a segment name, as segment rules give them:"
                          f" {topics.NAME_RULE}")
    if not isinstance(department, str):
        raise ConfigError(source, line, segment, "department must be a department name")
    references.append((department, line, segment))
    table_service_levels.check_tiers(entry, source, segment)
    documents = table_fields.optional(entry.get("refinements"), [])
    if not isinstance(documents, list):
        raise ConfigError(source, line, segment, "refinements must be a list; the first"
                          " whose `when` holds is used")
    refinements = tuple(_parse_refinement(document, f"{segment}.refinements[{index}]",
                                          source, references, costs)
                        for index, document in enumerate(documents, start=1))
    return Route(segment, department,
                 table_service_levels.parse_service_levels(entry, source=source, entry=segment),
                 refinements)


def _parse_refinement(document: Any, label: str, source: str,
                      references: table_fields.References, costs: conditions.Costs
                      ) -> Refinement:
    line = line_of(document)
    if not isinstance(document, dict):
        raise ConfigError(source, line, label, "a refinement is a mapping: name, when,"
                          " department, priority, first_response_target")
    table_fields.check_keys(document, _REFINEMENT_KEYS, source, line, label)
    name, expression = document.get("name"), document.get("when")
    if not isinstance(name, str) or not name.strip() or len(name) > tickets.MAX_RULE_NAME:
        raise ConfigError(source, line, label, "name is required: text of at most"
                                               f" {tickets.MAX_RULE_NAME} characters")
    expression, compiled = conditions.compile_boolean(ENVIRONMENT, expression, source=source,
                                                      line=line, name=name)
    department = document.get("department")
    if department is not None and not isinstance(department, str):
        raise ConfigError(source, line, name, "department must be a department name")
    service = table_service_levels.parse_override(document, source=source, entry=name)
    if department is None and service == priority.NO_OVERRIDE:
        raise ConfigError(source, line, name, "a refinement must set a department, a"
                          " priority or a first_response_target")
    if department is not None:
        references.append((department, line, name))
    refinement = Refinement(name, expression, compiled, department, service, line)
    # The largest first: a refinement too costly is refused before the many probes.
    for probes, only_budget in ((LARGEST, True), (PROBES, False)):
        for ticket, tier, activation in probes:
            try:
                with costs.evaluating() if only_budget else contextlib.nullcontext():
                    refinement.holds(activation)
            except RefinementError as exc:
                past_budget = conditions.past_budget(str(exc.__cause__))
                if only_budget and not past_budget:
                    continue  # the run time's to take: skipped on such a ticket
                # The probe's data is ours: CEL's own message helps the admin here.
                hint = conditions.PAST_BUDGET_HINT if past_budget else (
                    "guard fields that may be null or missing, e.g."
                    " `has(ticket.attributes.order)`")
                raise ConfigError(source, line, name, f"fails on {tickets.describe_view(ticket)}"
                                  f" (tier {tier}): {exc}: {exc.__cause__} ({hint})") from exc
        if only_budget:
            costs.check(line, name, tickets.describe_view(LARGEST[0][0]))
    return refinement


