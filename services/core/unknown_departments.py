"""How every service answers a department name the routing table in force lacks (a
typo, most often): the name, and the table's departments, so that the caller can pick
the one meant. One wording for the router (a transfer's `to_department`, a department
credential's subject, the department a request acts for: `GET
/v1/credentials/me?department=`, a report's `department`, a transfer's `from_department`,
services/router/service/acting_for.py) and the metrics service
(`GET /v1/departments/{d}/stats`).

The departments are listed to every caller, department credentials included: a
department hands tickets to other departments by name (`department transfer --to`), so
it needs them, and they are no secret from any credential (the platforms' callbacks
carry departments too). The name is looked up before the credential's scope is checked,
so that a typo of one's own department is told as a typo, not as another's."""

from __future__ import annotations

from collections.abc import Collection


def answer(department: str, in_table: Collection[str]) -> str:
    """Why `department` is refused: not in the table whose departments are `in_table`."""
    return (f"no department {department!r} in the routing table in force; its departments:"
            f" {', '.join(sorted(in_table)) or 'none'}")
