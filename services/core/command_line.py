"""The project's commands (`routing`, `department`, the PNG report) as typer apps whose
unexpected error is printed as the logs give one.

Python prints an error no command caught with its message, and a message may repeat the
data the command failed on: pydantic's quotes the input it refused (a customer's birth
date, a name), PostgreSQL's the row it did not take. An `App` prints its frames and class,
and its message only where `logs.said` gives it; then exits 1, as Python does.
"""

from __future__ import annotations

import sys
from typing import Any

import typer

from services.core import logs


class App(typer.Typer):
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().__call__(*args, **kwargs)
        except Exception as error:  # what the command did not expect; exits stay exits
            typer.echo(logs.exception_text((type(error), error, error.__traceback__)),
                       err=True)
            sys.exit(1)
