"""Which departments the stats API answers for. Pure decision code.

A department is known when the routing table in force names it (a department with no
tickets yet is answered, with zeros) or when a ticket kept in the store was in its hands
(`stats.held_by`: a department taken out of the table keeps its history readable). Any
other name is no department, most likely a typo, answered 404 rather than with zeros that
read as a quiet queue. Decided once, by `service.unknown_department`; a table that
cannot be read decides nothing, and any name is answered.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from services.core import unknown_departments

# Where the departments that held tickets are listed, for a caller told of an unknown one.
LISTED_AT = "GET /v1/departments"


@dataclass(frozen=True)
class UnknownDepartment:
    """A name the stats API knows no department by, and the routing table's departments."""

    department: str
    in_table: tuple[str, ...]  # the routing table's departments, sorted

    @classmethod
    def of(cls, department: str, in_table: Collection[str]) -> UnknownDepartment:
        return cls(department, tuple(sorted(in_table)))

    @property
    def detail(self) -> str:
        """The router's words for a name the table lacks (unknown_departments), and
        where the departments that held tickets are listed."""
        return (f"{unknown_departments.answer(self.department, self.in_table)}; no ticket"
                f" it held is kept (those that held tickets in a window: {LISTED_AT})")

    def answer(self) -> dict[str, Any]:
        """The 404's body, to any caller (unknown_departments says why)."""
        return {"error": "not_found", "detail": self.detail,
                "departments": list(self.in_table)}
