"""The tests' routing table (tests/routing.yaml) with a test's own settings: the table
read as YAML, the settings named changed or added, written back. A test names only what
it needs other than the tests' table, as a dict of what it would write in the file."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import TEST_ROUTING_TABLE

Settings = Mapping[str, Any]


def routing_table_with(*, departments: Mapping[str, Settings] | None = None,
                       routes: Mapping[str, Settings] | None = None,
                       without: Iterable[str] = (), **top: Any) -> str:
    """The tests' table as YAML text, with `top` settings at the top level (version,
    warning_share, ...), `departments` settings added to (or overriding those of) each
    named department's entry under departments: (a department not there is added),
    `routes` settings to the route of each named department, and each department in
    `without` gone from both its route and its entry."""
    table = yaml.safe_load(TEST_ROUTING_TABLE.read_text("utf-8"))
    table.update(top)
    gone = set(without)
    table["routes"] = [route for route in table["routes"] if route["department"] not in gone]
    table["departments"] = {name: entry for name, entry in table["departments"].items()
                            if name not in gone}
    for name, settings in (departments or {}).items():
        table["departments"][name] = {**(table["departments"].get(name) or {}), **settings}
    for name, settings in (routes or {}).items():
        [route] = [route for route in table["routes"] if route["department"] == name]
        route.update(settings)
    text: str = yaml.safe_dump(table, sort_keys=False, allow_unicode=True)
    return text


def routing_table_file(directory: Path, **edits: Any) -> Path:
    """routing.yaml in `directory`, holding routing_table_with(**edits)."""
    path = directory / "routing.yaml"
    path.write_text(routing_table_with(**edits), encoding="utf-8")
    return path
