"""CEL conditions, as segment rules and routing refinements use them: compiled once,
checked to be boolean, evaluated with errors that say what failed."""

from __future__ import annotations

import re
from typing import Any

from cel_expr_python import cel

from services.core.config_files import ConfigError

_T = cel.Type
# How CEL's errors start: the status code, e.g. `NOT_FOUND: Key not found in map : "..."`.
_STATUS_CODE = re.compile(r"([A-Z][A-Z_]*): ")
NOT_BOOLEAN = "NOT_BOOLEAN"


# What an admin is told of a condition that failed on a probe past CEL's iteration
# budget (their loops over the most attributes a ticket or customer may have).
PAST_BUDGET_HINT = ("loops over attributes, nested, go past CEL's iteration budget on the"
                    " most attributes a ticket or customer may have: loop less deep, or read"
                    " the attributes by name")


def past_budget(message: str) -> bool:
    """Whether CEL's error is its iteration budget's."""
    return "budget exceeded" in message.lower()


class ConditionFailed(RuntimeError):
    """A condition that could not be decided on some data (an error, or not a boolean).
    `kind` says which without the data (CEL's status code, e.g. NOT_FOUND or
    INVALID_ARGUMENT, or NOT_BOOLEAN); the message is CEL's own, which may repeat the
    data's values (a key not found, a pattern that does not compile)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def compile_boolean(environment: Any, expression: Any, *, source: str, line: int | None,
                    name: str) -> tuple[str, Any]:
    """The expression and its compiled form; ConfigError (file, line, name) if it cannot
    be a condition."""
    if not isinstance(expression, str) or not expression.strip():
        raise ConfigError(source, line, name, "when must be a CEL expression")
    try:
        compiled = environment.compile(expression)
    except RuntimeError as exc:
        raise ConfigError(source, line, name, f"not a valid CEL expression: {exc}") from exc
    if compiled.return_type() not in (_T.BOOL, _T.DYN):
        raise ConfigError(source, line, name,
                          f"the expression gives {compiled.return_type().name().lower()},"
                          " not a boolean")
    return expression, compiled


def holds(compiled: Any, activation: Any) -> bool:
    """Evaluate; ConditionFailed if the condition cannot be decided on this data. CEL
    returns most errors as values, and raises some (an evaluation past its iteration
    budget, as nested loops over a ticket's many attributes are; a map built with one
    key twice): both are the data's, not a bug, and fail the same way."""
    try:
        value = compiled.eval(activation)
    except RuntimeError as exc:
        raise _failed(str(exc)) from exc
    plain = value.plain_value()
    if plain is True or plain is False:  # a boolean: one call, no comparison of types
        return plain
    kind = value.type()
    if kind == _T.ERROR:
        raise _failed(str(value.value()))
    if kind != _T.BOOL:
        raise ConditionFailed(NOT_BOOLEAN, f"gave {kind.name().lower()}, not a boolean")
    return bool(value.value())


def _failed(message: str) -> ConditionFailed:
    """CEL's error as ConditionFailed, its kind the status code the message starts with."""
    code = _STATUS_CODE.match(message)
    return ConditionFailed(code.group(1) if code else "ERROR", message)
