"""The ACL table of docs/kafka-security.md is the one tests/kafka_acls.py grants, which
tests/e2e/test_kafka_security.py runs the pipeline with, and so are the `kafka-acls`
commands spelled out under it: an operator who copies the table, or the commands, gives
each user exactly what the pipeline was run with."""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Iterable
from dataclasses import dataclass
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


# The shell commands under the table, as an operator copies them, read as a shell and
# kafka-acls read them: in the doc's `sh` blocks, and quoted in its prose (`$A ...`).
FENCE = re.compile(r"^```sh\n(.*?)^```", re.MULTILINE | re.DOTALL)
QUOTED = re.compile(r"`(\$A [^`]+)`")
VARIABLE = re.compile(r"\$(\w+)")
ASSIGNMENT = re.compile(r"([A-Za-z_]\w*)=(.*)", re.DOTALL)
RESOURCE_OPTIONS: dict[str, kafka_acls.Resource] = {
    "--topic": "topic", "--group": "group", "--transactional-id": "transactional_id"}
OPERATIONS: dict[str, kafka_acls.Operation] = {
    "read": "read", "write": "write", "create": "create", "describe": "describe",
    "idempotentwrite": "idempotent_write"}
PATTERN_TYPES = {"prefixed": True, "literal": False}
PASSED_OVER = {"--bootstrap-server", "--command-config"}  # each with a value


@dataclass(frozen=True)
class AclCommand:
    action: str  # "add" or "remove"
    user: str  # the principal, without `User:`
    grants: frozenset[kafka_acls.Allow]


def words_of(lines: Iterable[str], variables: dict[str, str]) -> list[list[str]]:
    """Each line's words, comments dropped and the variables set by earlier lines
    expanded (`$A` alone, unquoted, is several words); an assignment sets one."""
    def substituted(word: str) -> str:
        return VARIABLE.sub(lambda used: variables.get(used[1], used[0]), word)

    def expanded(word: str) -> list[str]:
        if word.startswith("$") and word[1:] in variables:
            return shlex.split(variables[word[1:]])
        return [substituted(word)]

    found = []
    for line in lines:
        words = shlex.split(line, comments=True)
        if len(words) == 1 and (assigned := ASSIGNMENT.fullmatch(words[0])):
            variables[assigned[1]] = substituted(assigned[2])
        elif words:
            found.append([part for word in words for part in expanded(word)])
    return found


def acl_command(words: list[str]) -> AclCommand | None:
    """What a `kafka-acls --add` (or `--remove`) command allows (takes back): each
    operation on each resource it names, all prefixed or all literal; None for another
    command. An option not read here fails the test rather than be passed over."""
    if not words[0].startswith("kafka-acls") or "--list" in words:
        return None
    action, user, prefixed = "", "", False
    operations: list[kafka_acls.Operation] = []
    resources: list[tuple[kafka_acls.Resource, str]] = []
    options = iter(words[1:])
    for option in options:
        if option in ("--add", "--remove"):
            action = option.removeprefix("--")
        elif option == "--force":
            continue
        elif option == "--allow-principal":
            user = next(options).removeprefix("User:")
        elif option == "--operation":
            operations.append(OPERATIONS[next(options).lower()])
        elif option == "--resource-pattern-type":
            prefixed = PATTERN_TYPES[next(options).lower()]
        elif option in RESOURCE_OPTIONS:
            resources.append((RESOURCE_OPTIONS[option], next(options)))
        elif option in PASSED_OVER:
            next(options)
        else:
            raise AssertionError(f"{shlex.join(words)}: {option} is not read here")
    assert action and user, shlex.join(words)
    return AclCommand(action, user, frozenset(
        kafka_acls.Allow(resource, name, operation, prefixed=prefixed)
        for resource, name in resources for operation in operations))


def documented_commands() -> tuple[list[AclCommand], list[AclCommand]]:
    """The `kafka-acls` commands of the doc's `sh` blocks (continuation lines joined),
    and those quoted in its prose, with the variables the blocks set."""
    text = DOC.read_text(encoding="utf-8")
    variables: dict[str, str] = {}
    blocks = [line for block in FENCE.findall(text)
              for line in block.replace("\\\n", " ").splitlines()]
    spelled_out, quoted = (
        [command for words in words_of(lines, variables)
         if (command := acl_command(words)) is not None]
        for lines in (blocks, [span.replace("\n", " ") for span in QUOTED.findall(text)]))
    return spelled_out, quoted


def granted_by(commands: list[AclCommand]) -> dict[str, set[kafka_acls.Allow]]:
    granted: dict[str, set[kafka_acls.Allow]] = {}
    for command in commands:
        if command.action == "add":
            granted.setdefault(command.user, set()).update(command.grants)
    return granted


def user_named(user: str) -> str:
    """The table's user as the commands name it (`dept-<d>`: the department's)."""
    return user.replace("<d>", DEPARTMENT)


def said(allows: Iterable[kafka_acls.Allow]) -> str:
    """As the table says them: `read topic tickets.dlq`, `write topic prefix dept.`."""
    return ", ".join(sorted(
        f"{allow.operation} {allow.resource} {'prefix ' if allow.prefixed else ''}{allow.name}"
        for allow in allows)) or "nothing"


def granted_in_tests() -> dict[str, set[kafka_acls.Allow]]:
    return {user_named(user): set(allowed()) for user, allowed in GRANTED.items()}


def test_the_commands_grant_to_each_user_the_tests_grant_and_to_no_other() -> None:
    spelled_out, _ = documented_commands()
    assert set(granted_by(spelled_out)) == set(granted_in_tests())


@pytest.mark.parametrize("user", sorted(GRANTED))
def test_each_users_commands_grant_what_the_table_and_the_tests_grant(user: str) -> None:
    spelled_out, _ = documented_commands()
    granted = granted_by(spelled_out).get(user_named(user), set())
    expected = granted_in_tests()[user_named(user)]
    assert documented()[user] == expected
    assert granted == expected, (
        f"{user_named(user)}: the commands lack {said(expected - granted)};"
        f" they grant beyond the table {said(granted - expected)}")


def test_the_commands_quoted_in_the_prose_grant_only_what_the_table_grants() -> None:
    """The upgrade notes' `$A ...`: each adds what a release needs, within the table."""
    _, quoted = documented_commands()
    assert quoted
    for command in quoted:
        beyond = command.grants - granted_in_tests()[command.user]
        assert command.action == "add" and not beyond, (
            f"{command.user}: beyond the table: {said(beyond)}")


def test_a_removal_takes_back_nothing_the_table_grants() -> None:
    """The write on `tickets.events` departments no longer have."""
    spelled_out, _ = documented_commands()
    removals = [command for command in spelled_out if command.action == "remove"]
    assert removals
    for command in removals:
        taken = command.grants & granted_in_tests()[command.user]
        assert not taken, f"{command.user}: the removal takes back {said(taken)}"
