"""CEL conditions, as segment rules and routing refinements use them: compiled once,
checked to be boolean, evaluated with errors that say what failed."""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable, Iterator
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


# The most CPU one condition may take on the largest ticket and customer, and a file's
# conditions together (a rule set's, a routing table's refinements'): conditions run on
# every ticket, and cost microseconds (a pattern matched against each of a hundred
# attributes, a third of a millisecond). Past them, a pattern costly to compile (each
# evaluation compiles it again, for each attribute it meets) would take the stage's CPU,
# and a file of them would hold the loop that checks it for minutes. The file's cap leaves
# room for the most rules a set may hold (rules_file.MAX_RULES) of the cheapest kind:
# 1,000 comparisons measured 14-21 ms here, by load, so a cap of 25 ms refused a set of
# them or not as the machine was busy; at 100 ms such a set takes a fifth of it at most.
CONDITION_CPU_MAX_SECONDS = 0.005
CONDITIONS_CPU_MAX_SECONDS = 0.1


class Costs:
    """The CPU a file's conditions take on the largest contexts, one evaluation each (this
    thread's time: what other work on the machine takes is not counted), against the
    caps above: `evaluating` times an evaluation, `check` refuses the condition evaluated
    since the last check, naming it, if it or the file so far is past its cap."""

    def __init__(self, source: str, *,
                 clock: Callable[[], float] = time.thread_time) -> None:
        self._source = source
        self._clock = clock
        self._condition = 0.0
        self._file = 0.0

    @contextlib.contextmanager
    def evaluating(self) -> Iterator[None]:
        started = self._clock()
        try:
            yield
        finally:
            self._condition = max(self._condition, self._clock() - started)

    def check(self, line: int | None, name: str, on: str) -> None:
        """ConfigError if the condition `name` (at `line`), evaluated on `on` (the largest
        contexts, in words), or all so far, cost past the caps."""
        spent, self._condition = self._condition, 0.0
        self._file += spent
        hint = ("a matches() pattern is compiled at each evaluation, for each value it"
                " meets: match a simpler pattern, or fewer values (an attribute by name)")
        if spent > CONDITION_CPU_MAX_SECONDS:
            raise ConfigError(self._source, line, name,
                              f"costs {spent * 1000:.1f} ms of CPU on {on}, at most"
                              f" {CONDITION_CPU_MAX_SECONDS * 1000:g} ms a condition ({hint})")
        if self._file > CONDITIONS_CPU_MAX_SECONDS:
            raise ConfigError(self._source, line, name,
                              f"the conditions up to this one cost {self._file * 1000:.1f} ms"
                              f" of CPU on {on}, at most"
                              f" {CONDITIONS_CPU_MAX_SECONDS * 1000:g} ms together ({hint})")


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
