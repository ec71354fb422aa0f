"""The project's commands (`routing`, `department`, the PNG report) as typer apps whose
unexpected error is printed as the logs give one.

Python prints an error no command caught with its message, and a message may repeat the
data the command failed on: pydantic's quotes the input it refused (a customer's birth
date, a name), PostgreSQL's the row it did not take. An `App` prints its frames and class,
and its message only where `logs.said` gives it; then exits 1, as Python does.
A command checks what it is given as the HTTP API checks a body (`checked`), and says a
refusal in the API's words. Either way a refused field is said as the option the user
typed (`option_of`): `--url`, not the body's `url` (`checked`); `--end`, not the API's
`body.end` (`refusal`, of an HTTP API's answer).

An `App`'s command is listed in its group's `--help` by the first paragraph of its help
(its docstring), as one paragraph wrapped to the terminal: typer's rich help keeps a
docstring's line breaks in that list, where it rewraps them in the command's own help.
"""

from __future__ import annotations

import inspect
import json
import sys
from collections.abc import Mapping
from typing import Any, TypeVar

import typer
from pydantic import BaseModel, ValidationError
from typer.core import TyperGroup

from services.core import logs, request_bodies

Body = TypeVar("Body", bound=BaseModel)


class App(typer.Typer):
    def __init__(self, **settings: Any) -> None:
        super().__init__(**{"cls": _Group, **settings})

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().__call__(*args, **kwargs)
        except Exception as error:  # what the command did not expect; exits stay exits
            typer.echo(logs.exception_text((type(error), error, error.__traceback__)),
                       err=True)
            sys.exit(1)


class _Group(TyperGroup):
    """A group whose commands are listed by `listed_help`, unless given a short help."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for command in self.commands.values():
            if command.short_help is None:
                command.short_help = listed_help(command.help or "")


def listed_help(help_text: str) -> str:
    """How a command is listed among its group's: its help's first paragraph, its line
    breaks undone (the terminal wraps it)."""
    first = inspect.cleandoc(help_text).partition("\f")[0].split("\n\n")[0]
    return " ".join(first.split())


def checked(body: type[Body], options: Mapping[str, str], /, **given: object) -> Body:
    """`given` as the HTTP API checks its body; else each problem said as the API says it
    (a pattern's refusal in words, never the regex or the input) of the option that gave
    it (`options`: the body's field to the option as the user types it, `url` to
    `--url`), exit 2."""
    try:
        return body.model_validate(given)
    except ValidationError as exc:
        for problem in exc.errors(include_input=False, include_url=False):
            field = ".".join(str(part) for part in problem["loc"])
            where = option_of(field, options) if field else "options"
            typer.echo(f"{where}: {request_bodies.message_of(problem)}", err=True)
        raise typer.Exit(2) from exc


def refusal(answer: str, options: Mapping[str, str]) -> str:
    """An HTTP API's answer refusing a request, as the command that asked says it: each
    field refused (the API's `fields`) named by the option that sets it (`options`: the
    API's field to the option as the user types it, `body.end` to `--end`; a field within
    one, `body.table.routes`, as `--table (routes)`), and what was wrong; a field no option
    sets keeps the API's name. An answer without `fields` is passed on as it came."""
    try:
        said = json.loads(answer)
    except ValueError:
        return answer
    fields = said.get("fields") if isinstance(said, dict) else None
    if not isinstance(fields, list) or not fields \
            or not all(isinstance(field, dict) for field in fields):
        return answer
    told = "; ".join(f"{option_of(str(field.get('field')), options)}: {field.get('problem')}"
                     for field in fields)
    return f"{said.get('error')}: {told}"


def option_of(field: str, options: Mapping[str, str]) -> str:
    """`field` (an HTTP API's, e.g. body.end; a body's, e.g. url) as the option of
    `options` that sets it."""
    if field in options:
        return options[field]
    for api_field, option in options.items():
        if field.startswith(f"{api_field}."):
            return f"{option} ({field.removeprefix(f'{api_field}.')})"
    return field
