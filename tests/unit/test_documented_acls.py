"""The ACL table of docs/kafka-security.md is the one tests/kafka_acls.py grants, which
tests/e2e/test_kafka_security.py runs the pipeline with: an operator who copies the
table gives each user exactly what the pipeline was run with."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from tests import kafka_acls

DOC = Path(__file__).resolve().parents[2] / "docs" / "kafka-security.md"
DEPARTMENT = "public_sector"  # the department `dept-<d>`'s row is read for
# The table's columns after the user: the resource each names, and what it allows.
COLUMNS: list[tuple[kafka_acls.Resource | None, kafka_acls.Operation]] = [
    ("topic", "read"), ("topic", "write"), ("group", "read"),
    ("transactional_id", "write"), (None, "describe")]
# In the "Describe only" column, the word before a name says what it is.
KINDS: dict[str, kafka_acls.Resource] = {
    "topic": "topic", "topics": "topic", "group": "group", "groups": "group"}
NAME = re.compile(r"(prefix )?`([^`]+)`")


def allowed_in(cell: str, resource: kafka_acls.Resource | None,
               operation: kafka_acls.Operation) -> set[kafka_acls.Allow]:
    found = set()
    for match in NAME.finditer(cell):
        kind = resource
        if kind is None:
            words = re.findall(r"[a-z]+", cell[:match.start()])
            kind = next(KINDS[word] for word in reversed(words) if word in KINDS)
        name = match.group(2).replace("<d>", DEPARTMENT)
        found.add(kafka_acls.Allow(kind, name, operation, prefixed=bool(match.group(1))))
    return found


def documented() -> dict[str, set[kafka_acls.Allow]]:
    """Each user's row of the table under "Users and ACLs", as Allow entries."""
    section = DOC.read_text(encoding="utf-8").split("## Users and ACLs", 1)[1]
    rows: dict[str, set[kafka_acls.Allow]] = {}
    for line in section.split("\n## ", 1)[0].splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        user = NAME.search(cells[0]) if line.startswith("| `") else None
        if user is None:
            continue
        assert len(cells) == 1 + len(COLUMNS), line
        rows[user.group(2)] = set().union(*(
            allowed_in(cell, *column) for cell, column in zip(cells[1:], COLUMNS,
                                                              strict=True)))
    return rows


GRANTED: dict[str, Callable[[], list[kafka_acls.Allow]]] = {
    "router": kafka_acls.router, "segmenter": kafka_acls.segmenter,
    "metrics": kafka_acls.metrics, "dept-<d>": lambda: kafka_acls.department(DEPARTMENT)}


def test_the_table_has_a_row_for_each_user_the_tests_grant() -> None:
    assert set(documented()) == {*GRANTED, "admin"}


@pytest.mark.parametrize("user", sorted(GRANTED))
def test_each_users_row_is_what_the_tests_grant(user: str) -> None:
    assert documented()[user] == set(GRANTED[user]())
