"""Where an escalation sends a ticket, by the routing table in force. Pure decision code.

A breach (level 1) goes to the department's `escalation_to`; still unanswered later
(level 2), to the `second_escalation.to` its breach stored; without one, the ticket is
flagged where it is. The table in force may since lack a department either names
(`RoutingTable.lacks`: a table without it was put in force meanwhile):
- a ticket held by a department the table lacks escalates to the table's fallback
  department, at either level: no department of the table would take it otherwise, and
  no ticket is ever dropped. Its breach brings no second level (the table has no
  `second_escalation` for it);
- a level-2 target the table lacks is not escalated to, as a transfer there is refused:
  the ticket is flagged where it is, in a department of the table that serves it.
Either says why, for the ticket's trace.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from services.router import routing


@dataclass(frozen=True)
class Escalation:
    level: Literal[1, 2]  # 1: a target breached; 2: still unanswered after it
    to: str | None  # None: flagged where the ticket is
    second: routing.SecondEscalation | None = None  # level 1: the level 2 to come
    why: str | None = None  # how the table in force changed where it goes


def on_breach(table: routing.RoutingTable, department: str) -> Escalation:
    """Level 1 of a ticket `department` holds."""
    if table.lacks(department):
        return _to_fallback(table, department, 1)
    policy = table.policy(department)
    return Escalation(1, _elsewhere(policy.escalation_to, department),
                      policy.second_escalation)


def on_second_level(table: routing.RoutingTable, department: str,
                    stored_to: str | None) -> Escalation:
    """Level 2 of a ticket `department` holds, `stored_to` named at its breach."""
    if table.lacks(department):
        return _to_fallback(table, department, 2)
    if stored_to is not None and table.lacks(stored_to):
        return Escalation(2, None, why=f"{_gone(table, stored_to)}: flagged in {department}")
    return Escalation(2, _elsewhere(stored_to, department))


def _to_fallback(table: routing.RoutingTable, department: str,
                 level: Literal[1, 2]) -> Escalation:
    return Escalation(level, table.fallback_department,
                      why=f"{_gone(table, department)}: to the fallback department"
                          f" {table.fallback_department}")


def _gone(table: routing.RoutingTable, department: str) -> str:
    return f"{department} is no longer in the routing table (version {table.version})"


def _elsewhere(target: str | None, department: str) -> str | None:
    return None if target == department else target
