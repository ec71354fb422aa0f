"""What a user types to set each parameter of a command: the name of an argument, an
option (`--url`), a flag's pair (`--enabled/--disabled`)."""

from __future__ import annotations

from typing import Any

import pytest
import typer
import typer.core
import typer.main
from typer.testing import CliRunner


def typed(app: typer.Typer, *path: str) -> set[str]:
    """Each way to set a parameter of the command at `path` of `app` (`"webhooks",
    "register"`)."""
    command = typer.main.get_command(app)
    for name in path:
        assert isinstance(command, typer.core.TyperGroup)
        command = command.commands[name]
    return {way for param in command.params
            for way in [*param.opts, *param.secondary_opts,
                        "/".join([*param.opts, *param.secondary_opts])]}


class Checked:
    """`command_line.checked` recording what a command gives it, then ending the command
    (exit 3) before anything is done."""

    def __init__(self) -> None:
        self.given: list[tuple[type, dict[str, str], set[str]]] = []

    def __call__(self, body: type, options: dict[str, str], /, **given: object) -> None:
        self.given.append((body, options, set(given)))
        raise typer.Exit(3)


def assert_fields_named_by_options(monkeypatch: pytest.MonkeyPatch, app: typer.Typer,
                                   module: Any, group: str, command: list[str], body: type,
                                   options: dict[str, str]) -> None:
    """Every field `command` of `group` gives (each option typed) is in its table
    `options`, as a field of `body`, named by one of the command's own options: an option
    renamed fails. `module` is the command's, whose `command_line.checked` is watched."""
    checked = Checked()
    monkeypatch.setattr(module.command_line, "checked", checked)
    assert CliRunner().invoke(app, [group, *command]).exit_code == 3
    [(checked_body, named_by, fields)] = checked.given
    assert (checked_body, named_by) == (body, options)
    assert fields <= set(options) <= set(body.model_fields)
    assert set(options.values()) <= typed(app, group, command[0])
