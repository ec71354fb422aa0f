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

# Where the departments that held tickets are listed, for a caller told of an unknown one.
LISTED_AT = "GET /v1/departments"


@dataclass(frozen=True)
class UnknownDepartment:
    """A name the stats API knows no department by, and the departments it can tell."""

    department: str
    in_table: tuple[str, ...]  # the routing table's departments, sorted

    @classmethod
    def of(cls, department: str, in_table: Collection[str]) -> UnknownDepartment:
        return cls(department, tuple(sorted(in_table)))

    @property
    def detail(self) -> str:
        return (f"no department {self.department!r}: the routing table in force does not"
                f" name it and no ticket it held is kept; the table's departments:"
                f" {', '.join(self.in_table) or 'none'} (those that held tickets in a"
                f" window: {LISTED_AT})")

    def answer(self, *, listed: bool) -> dict[str, Any]:
        """The 404's body. The table's departments are `listed` to an admin only: a
        department's credential (one named for a department the table lacks) is told the
        name is unknown, not which departments exist."""
        if listed:
            return {"error": "not_found", "detail": self.detail,
                    "departments": list(self.in_table)}
        return {"error": "not_found",
                "detail": (f"no department {self.department!r}: the routing table in force"
                           " does not name it and no ticket it held is kept; an admin can"
                           " tell which departments exist")}

