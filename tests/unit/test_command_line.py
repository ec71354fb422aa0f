"""A command that ends on an error it did not expect prints it as the logs give one
(command_line.App): frames and class, its message only where it cannot repeat data,
where Python printed the whole message (pydantic's quotes the input it refused,
PostgreSQL's the row it did not take)."""

from __future__ import annotations

import contextlib
import importlib
import tomllib
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pydantic
import pytest
import typer
from sqlalchemy.exc import IntegrityError
from typer.core import TyperGroup
from typer.testing import CliRunner

from services import cli as routing_cli
from services.core import access, command_line, tickets
from services.core.credentials_api import Holder
from services.departments import cli as department_cli
from services.metrics import report
from services.segmenter import bootstrap
from services.segmenter import service as segmenter_service

NAME, BIRTH_DATE, EMAIL = "Jane Doe", "1980-02-29", "jane.doe@example.com"
PERSONAL = (NAME, BIRTH_DATE, EMAIL)


def ended(app: typer.Typer, arguments: list[str], capsys: pytest.CaptureFixture[str]
          ) -> tuple[int, str]:
    """The exit code and what the command printed, run as its entry point runs it."""
    with pytest.raises(SystemExit) as exited:
        app(arguments, prog_name="command")
    captured = capsys.readouterr()
    code = exited.value.code
    return (code if isinstance(code, int) else 1), captured.out + captured.err


def a_record_refused() -> pydantic.ValidationError:
    """What validating a lane's record carrying a customer's name, birth date and e-mail
    address raises: its text quotes them."""
    try:
        tickets.RoutedTicket.model_validate(
            {"ticket_id": "t-1", "customer_id": EMAIL, "channel": NAME,
             "received_at": f"born {BIRTH_DATE}", "subject": NAME})
    except pydantic.ValidationError as error:
        assert all(value in str(error) for value in (NAME, BIRTH_DATE))  # as Python prints it
        return error
    raise AssertionError("the record was taken")


class TestAnUnexpectedErrorQuotesNoData:
    def test_the_department_tool_names_the_error_not_the_record(
            self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
            ) -> None:
        monkeypatch.setenv("API_TOKEN", "rt_department")
        monkeypatch.setattr(department_cli.queue, "holder", lambda *args, **kwargs: Holder(
            role=access.Role.DEPARTMENT, subject="public_sector"))

        async def reached(settings: object) -> None:
            pass

        async def read_queue(*args: object, **kwargs: object) -> AsyncIterator[object]:
            raise a_record_refused()
            yield

        monkeypatch.setattr(department_cli.broker_start, "reached", reached)
        monkeypatch.setattr(department_cli.queue, "read_queue", read_queue)

        code, told = ended(department_cli.app, ["queue", "public_sector"], capsys)

        assert code == 1
        assert "Traceback" in told and "pydantic_core._pydantic_core.ValidationError" in told
        assert "; routing: Field required" in told  # fields, as a dead letter's reason says
        assert not [value for value in PERSONAL if value in told], told

    def test_a_routing_command_names_the_store_refusal_not_the_row(
            self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
            ) -> None:
        monkeypatch.setenv("DATABASE_URL", "sqlite+aiosqlite:///unused.db")

        @contextlib.asynccontextmanager
        async def connect(settings: object, *, client_id: str) -> AsyncIterator[object]:
            yield SimpleNamespace(segmenter=SimpleNamespace(customers=None, publisher=None))

        async def recompute_tiers(*args: object, **kwargs: object) -> None:
            raise IntegrityError(
                "UPDATE customers ...", {"name": NAME},
                Exception(f"Failing row contains (c-1, {NAME}, {BIRTH_DATE}, {EMAIL})."))

        async def reached(settings: object) -> None:
            pass

        monkeypatch.setattr(bootstrap, "connect", connect)
        monkeypatch.setattr(segmenter_service, "recompute_tiers", recompute_tiers)
        monkeypatch.setattr("services.core.broker_start.reached", reached)

        code, told = ended(routing_cli.app, ["recompute-tiers"], capsys)

        assert code == 1
        assert "sqlalchemy.exc.IntegrityError" in told
        assert not [value for value in PERSONAL if value in told], told

    def test_exits_stay_exits(self, capsys: pytest.CaptureFixture[str]) -> None:
        app = command_line.App()

        @app.command()
        def refuse() -> None:
            typer.echo("refused: a reason", err=True)
            raise typer.Exit(2)

        code, told = ended(app, [], capsys)

        assert code == 2 and told == "refused: a reason\n"


def test_every_command_is_such_an_app() -> None:
    """The scripts pyproject.toml installs, and the PNG report (`python -m`)."""
    scripts = tomllib.loads(Path("pyproject.toml").read_text())["project"]["scripts"]
    apps = [getattr(importlib.import_module(module), name)
            for module, name in (target.split(":") for target in scripts.values())]
    assert len(apps) == 2
    for app in [*apps, report.app]:
        assert isinstance(app, command_line.App), app


def _groups(command: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    """The groups under `command` (typer's own click), each with the words leading to it."""
    if not isinstance(command, TyperGroup):
        return []
    return [(path, command), *(group for name, sub in command.commands.items()
                               for group in _groups(sub, (*path, name)))]


def _command_list(help_text: str) -> list[str]:
    """The rows of the Commands panel of a group's rich `--help`, its borders taken off."""
    lines = help_text.splitlines()
    start = next(at for at, line in enumerate(lines) if "Commands" in line and "╭" in line)
    rows = []
    for line in lines[start + 1:]:
        if line.startswith("╰"):
            return rows
        rows.append(line.strip().removeprefix("│ ").removesuffix("│").rstrip())
    raise AssertionError(f"the Commands panel does not end:\n{help_text}")


@pytest.mark.parametrize(("app", "groups_in_it"), [
    (routing_cli.app, ["", "credentials", "webhooks", "segments", "dead-letters"]),
    (department_cli.app, [""])], ids=["routing", "department"])
def test_each_command_is_listed_in_one_line_on_a_wide_terminal(
        app: typer.Typer, groups_in_it: list[str]) -> None:
    """A command's entry in its group's `--help` is its help's first paragraph, wrapped by
    the terminal only: on one wide enough for every entry, each is one line (a docstring's
    line break, kept, broke entries mid-sentence)."""
    groups = _groups(typer.main.get_command(app))
    assert [" ".join(path) for path, _group in groups] == groups_in_it
    for path, group in groups:
        told = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "400"})
        assert told.exit_code == 0, told.output
        rows = _command_list(told.output)
        assert len(rows) == len(group.commands), (path, rows)
        assert not [row for row in rows if row.startswith(" ")], (path, rows)


def test_a_command_is_listed_by_its_first_paragraph_as_one() -> None:
    assert command_line.listed_help("""Run the rule set in force over the whole
        customer base.

        More about it.""") == "Run the rule set in force over the whole customer base."
