"""Simulating a candidate over a past window: the one use case the API and the CLI call.

The baseline is the routing table version that was in force at the window's end (the
store keeps every version with the time it was put in force); the departments' calendars
in it are the ones their response rates are measured under. The candidate is a routing
table and optionally a segment rule set, each given as text or as a stored version id;
without a table the candidate is the baseline itself, which is how a replay is checked
against what happened (its `replay_error`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from services.core import config_files, config_store, durations
from services.router import overflow, routing, table_file
from services.segmenter import rules, rules_file
from services.simulator import engine, lanes, rates, summary
from services.simulator.history import HistoryReader

EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
# Replays averaged (seeded): by default, and at most (each one replays the whole window),
# over the API and the CLI alike.
REPLICATIONS = 5
MOST_REPLICATIONS = 20


class Refused(ValueError):
    """A caller's mistake in an order, naming the field."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


@dataclass(frozen=True)
class Order:
    start: datetime
    end: datetime
    table: str | None = None  # the candidate routing table's text
    table_version_id: int | None = None
    rules: str | None = None  # the candidate segment rules' text
    rules_version_id: int | None = None
    replications: int = REPLICATIONS


@dataclass(frozen=True)
class Checked:
    """An order found sound, with the routing tables and rules it names, loaded."""

    order: Order
    baseline_version: config_store.ConfigVersion  # the table in force at the window's end
    baseline: routing.RoutingTable
    candidate: engine.Candidate


async def check(order: Order, *, tables: config_store.ConfigVersions,
                rule_sets: config_store.ConfigVersions, now: datetime) -> Checked:
    """Raises Refused (naming the field) for a caller's mistake, ConfigError for a
    candidate text that does not load: all before the history is read."""
    _check_window(order, now)
    baseline_version = await _in_force_at(tables, order.end)
    baseline = await config_files.parse_off_the_loop(
        table_file.parse, baseline_version.text,
        f"table version #{baseline_version.version_id}")
    table = await _table(order, tables) or baseline
    return Checked(order, baseline_version, baseline,
                   engine.Candidate(table, await _rules(order, rule_sets)))


async def run(checked: Checked, *, reader: HistoryReader, now: datetime,
              lanes_missing: Mapping[str, Sequence[str]] = engine.NONE_MISSING,
              ) -> dict[str, Any]:
    """Replay the order's window through its candidate, next to what happened, with the
    departments whose lanes the router could not make now (`lanes_missing`, each with
    its lanes missing: no ticket handed to them after hours or overflowing, as the
    router hands none; the answer's `lanes_missing` counts the tickets they changed)."""
    order, baseline = checked.order, checked.baseline
    window = await reader.window(order.start, order.end,
                                 with_customers=checked.candidate.rules is not None)
    # Seconds of computing for a long window: in a thread, so the router it runs in
    # keeps serving meanwhile.
    described = await asyncio.to_thread(
        replay, window.tickets, baseline=baseline, candidate=checked.candidate,
        replications=order.replications, as_of=now,
        lanes_missing={department: tuple(missing)
                       for department, missing in lanes_missing.items()})
    return {"window": {"start": order.start.isoformat(), "end": order.end.isoformat()},
            "without_state": window.unreplayed.without_state,
            "held": window.unreplayed.held,
            "baseline": {"table_version_id": checked.baseline_version.version_id,
                         "table_version": baseline.version},
            **described}


def replay(history: Sequence[engine.HistoricTicket], *, baseline: routing.RoutingTable,
           candidate: engine.Candidate, replications: int, as_of: datetime,
           lanes_missing: Mapping[str, Sequence[str]] = engine.NONE_MISSING,
           ) -> dict[str, Any]:
    """Measure the departments' rates under the baseline's calendars, replay the history
    through the candidate and describe it next to what happened."""
    actual = [ticket.actual for ticket in history]
    mean_service = rates.mean_service_seconds(
        actual, lambda department: baseline.policy(department).calendar)
    runs = engine.simulate(history, candidate, mean_service=mean_service,
                           rate_window=overflow.RESPONSE_RATE_WINDOW,
                           replications=replications, lanes_missing=lanes_missing)
    return describe(actual, runs, candidate=candidate, mean_service=mean_service,
                    as_of=as_of, lanes_missing=lanes_missing)


def describe(actual: Sequence[engine.Served], runs: Sequence[engine.Replication], *,
             candidate: engine.Candidate, mean_service: Mapping[str, float],
             as_of: datetime,
             lanes_missing: Mapping[str, Sequence[str]] = engine.NONE_MISSING,
             ) -> dict[str, Any]:
    """A simulation next to what happened, as the API answers it; `lanes_missing`: the
    departments whose lanes the router could not make, which the replay applied."""
    comparison = summary.compare(actual, [run.served for run in runs], as_of=as_of)
    return {
        "as_of": as_of.isoformat(),
        "tickets": len(actual),
        "rule_failures": max((len(run.rule_failures) for run in runs), default=0),
        "candidate": {"table_version": candidate.table.version,
                      "rules_version": candidate.rules.version if candidate.rules else None},
        "replications": len(runs),
        "mean_service_seconds": dict(mean_service),
        "departments": _rows(comparison.departments, "department"),
        "segments": _rows(comparison.segments, "segment"),
        "groups": {attribute: _rows(groups, "group")
                   for attribute, groups in comparison.groups.items()},
        "replay_error": asdict(summary.replay_error(comparison.departments)),
        "lanes_missing": {"found": lanes.FOUND, "departments": [
            asdict(department) for department in lanes.account(
                lanes_missing, [run.affected for run in runs])]},
    }


def _check_window(order: Order, now: datetime) -> None:
    if order.start < EARLIEST:
        raise Refused("start", f"must not be before {EARLIEST.isoformat()}: no ticket is")
    if order.end <= order.start:
        raise Refused("end", "must come after start")
    if order.end - order.start > durations.LONGEST:
        raise Refused("end", "the window is at most 366 days")
    if order.end > now:
        raise Refused("end", "must not be in the future: a simulation replays the past")
    for text, version_id, name in ((order.table, order.table_version_id, "table"),
                                   (order.rules, order.rules_version_id, "rules")):
        if text is not None and version_id is not None:
            raise Refused(f"{name}_version_id",
                               f"give either {name} (a text) or {name}_version_id, not both")


async def _in_force_at(tables: config_store.ConfigVersions,
                       moment: datetime) -> config_store.ConfigVersion:
    before = None
    while True:
        page = await tables.history(limit=100, before=before)
        for version in page:
            if version.created_at <= moment:
                return version
        if len(page) < 100:
            break
        before = page[-1].version_id
    if page:  # put in force only after the window: the oldest is the closest
        return page[-1]
    raise Refused("table_version_id", "the store holds no routing table version yet")


async def _table(order: Order, tables: config_store.ConfigVersions) -> routing.RoutingTable | None:
    if order.table is not None:
        return await config_files.parse_off_the_loop(table_file.parse, order.table,
                                                    "candidate routing table")
    if order.table_version_id is None:
        return None
    version = await tables.get(order.table_version_id)
    if version is None:
        raise Refused("table_version_id",
                           f"no routing table version #{order.table_version_id}")
    return await config_files.parse_off_the_loop(table_file.parse, version.text,
                                                f"table version #{version.version_id}")


async def _rules(order: Order, rule_sets: config_store.ConfigVersions) -> rules.RuleSet | None:
    if order.rules is not None:
        return await config_files.parse_off_the_loop(rules_file.parse, order.rules,
                                                    source="candidate segment rules")
    if order.rules_version_id is None:
        return None
    version = await rule_sets.get(order.rules_version_id)
    if version is None:
        raise Refused("rules_version_id",
                           f"no segment rules version #{order.rules_version_id}")
    return await config_files.parse_off_the_loop(
        rules_file.parse, version.text, source=f"rules version #{version.version_id}")


def _rows(figures: Mapping[str, summary.SideBySide], key: str) -> list[dict[str, Any]]:
    return [{key: name, "actual": asdict(side.actual), "simulated": asdict(side.simulated)}
            for name, side in figures.items()]
