"""Logging set-up: one JSON object a line, fields passed as `extra`.

Log ids, departments, segments and reasons; never names, contact details, birth dates
or gender (the ticket's text can hold any of these, so it is never logged either). An
error logged with its traceback (`logger.exception`, `exc_info`, uvicorn's own for a
request that failed) is told by its frames and class, and by its message only where that
cannot repeat the data it failed on (`said`): pydantic's text quotes the input it refused,
PostgreSQL's the row it did not take ("Failing row contains (...)").
"""

from __future__ import annotations

import logging
import time
import traceback
from types import TracebackType

import orjson
from pydantic import ValidationError
from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.orjson import OrjsonFormatter

from services.core import data_paths, library_lines, unicode_errors
from services.core.settings import Settings

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None] | tuple[None, None, None]
NOT_LOGGED = "(its message is not logged: it may repeat the data it failed on)"
_CAUSE = "\nThe above exception was the direct cause of the following exception:\n\n"
_CONTEXT = "\nDuring handling of the above exception, another exception occurred:\n\n"
# The most sub-exceptions of a group told, as traceback's own (`max_group_width`).
_GROUP_WIDTH = 15


def configure(settings: Settings, *, service: str) -> None:
    # What no line of ours writes, not looked up for each record: the caller's file, line
    # and function (a walk up the stack), its thread's, process's and multiprocessing
    # name (the logging HOWTO's "Optimization"; a line 11.9 -> 9.5 us, README "Measured").
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    # A library's line repeated while the broker is down, collapsed; the Kafka client's
    # connection errors as warnings of an outage (library_lines).
    handler = library_lines.WritingLibraryLines(
        library_lines.LibraryLines(library_lines.INTERVAL_SECONDS))
    if settings.log_format == "json":
        # orjson: the intake logs each accepted ticket, and the standard library's json
        # took two thirds of that line's formatting (about 10 us a request of ~35).
        handler.setFormatter(JsonWithoutData(
            "%(asctime)s %(levelname)s %(name)s %(message)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            static_fields={"service": service},
            reserved_attrs=[*RESERVED_ATTRS, *FOR_A_TERMINAL],
        ))
    else:
        handler.setFormatter(TextWithFields(f"%(asctime)s {service} %(levelname)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
    handler.setLevel(settings.log_level)
    # Clients' own request lines, off below WARNING: httpx logs each request's URL at INFO
    # (a platform's callback URL may carry its token in the query), httpcore its headers
    # at DEBUG.
    for client in ("aiokafka", "httpx", "httpcore"):
        logging.getLogger(client).setLevel(max(root.level, logging.WARNING))


# What a library passes as `extra` for a terminal alone, left out of a line: uvicorn's
# `color_message`, its message again with ANSI escapes, and rich's `markup` (its
# handler's flag to read the message's colour tags). The only extras the services'
# libraries pass (tests/unit/test_logs.py reads their source, and their dependencies',
# for others).
FOR_A_TERMINAL = frozenset({"color_message", "markup"})
# What a log record holds of its own (and those); the rest is what the call passed as
# `extra`.
_NOT_FIELDS = (frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
               | FOR_A_TERMINAL)


class _TimeBySecond(logging.Formatter):
    """A record's time as logging writes it by default (local time, then its
    milliseconds), the part up to the second written once a second, not once a line."""

    _second: tuple[int, str] = (-1, "")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        if datefmt:
            return super().formatTime(record, datefmt)
        second = int(record.created)  # as `converter` (time.localtime) takes it
        written = self._second
        if written[0] != second:
            written = self._second = (second, time.strftime(self.default_time_format,
                                                            self.converter(second)))
        msecs = self.default_msec_format
        return msecs % (written[1], record.msecs) if msecs else written[1]


class TextWithFields(_TimeBySecond):
    """One line of text a record, then the fields its call passed as `extra`, as
    key=value (JSON values), which the JSON format gives as fields of its own; an error's
    traceback as `exception_text` gives it."""

    def formatException(self, ei: ExcInfo) -> str:
        return exception_text(ei)

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        fields = " ".join(f"{key}={orjson.dumps(value, default=str).decode()}"
                          for key, value in vars(record).items() if key not in _NOT_FIELDS)
        return f"{line} {fields}" if fields else line


def said(error: BaseException) -> str:
    """An error's message as logs give it: the project's own that say what failed
    without its values (faults.SPEAKING), the broker's and the system's (OSError: a
    connection, a file), a store's outage or conflict (faults.classify: unreachable,
    timed out, locked, a deadlock: what ops on call read first, never a row); pydantic's
    as faults.reason words it (fields, never input); a codec's by where and why
    (unicode_errors: never the character or bytes); any other's (a store's refusal of a
    row, a library's) not at all, only the store's code where it gives one (db.error_code:
    SQLite's result code, PostgreSQL's SQLSTATE)."""
    if isinstance(error, ValidationError):
        return data_paths.reasons(error.errors(include_input=False, include_url=False),
                                  whole="data")
    if isinstance(error, UnicodeError):
        return unicode_errors.problem(error)
    # Imported here, not with this module: a process that logs without a Kafka client
    # (the simulator) loads none (faults holds the client's errors too).
    from aiokafka.errors import KafkaError

    from services.core import db, faults

    if isinstance(error, (*faults.SPEAKING, OSError, KafkaError)) \
            or faults.classify(error) is not faults.Fault.RECORD:
        return str(error)
    # The store's code (SQLite's SQLITE_ERROR: no such table or column, a syntax error;
    # PostgreSQL's SQLSTATE 42703, an undefined column) says what failed without the data.
    return " ".join(filter(None, (db.error_code(error), NOT_LOGGED)))


def exception_text(exc_info: ExcInfo) -> str:
    """An error and its chain as `traceback` prints them (frames, class), each message
    as `said` gives it; a group's errors (a TaskGroup's: what failed) each so, after it."""
    error = exc_info[1]
    chain: list[tuple[BaseException, str]] = []  # each error, and how the next led to it
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if error.__cause__ is not None:
            chain.append((error, _CAUSE))
            error = error.__cause__
        elif error.__context__ is not None and not error.__suppress_context__:
            chain.append((error, _CONTEXT))
            error = error.__context__
        else:
            chain.append((error, ""))
            error = None
    if not chain:
        return "NoneType: None"
    parts: list[str] = []
    for position in range(len(chain) - 1, -1, -1):
        error = chain[position][0]
        if error.__traceback__ is not None:
            parts.append("Traceback (most recent call last):\n"
                         + "".join(traceback.format_tb(error.__traceback__)))
        kind = type(error)
        name = (kind.__qualname__ if kind.__module__ == "builtins"
                else f"{kind.__module__}.{kind.__qualname__}")
        parts.append(f"{name}: {said(error)}\n")
        if isinstance(error, BaseExceptionGroup):
            parts.append(_each_of(error))
        if position:
            parts.append(chain[position - 1][1])
    return "".join(parts).rstrip("\n")


def _each_of(group: BaseExceptionGroup[BaseException]) -> str:
    """A group's errors, each numbered and indented under it as traceback prints them."""
    told = []
    for number, error in enumerate(group.exceptions[:_GROUP_WIDTH], start=1):
        text = exception_text((type(error), error, error.__traceback__))
        told.append(f"+---------------- {number} ----------------\n"
                    + "".join(f"| {line}\n" for line in text.splitlines()))
    more = len(group.exceptions) - _GROUP_WIDTH
    if more > 0:
        told.append(f"+---------------- and {more} more ----------------\n")
    return "".join(told)


class JsonWithoutData(_TimeBySecond, OrjsonFormatter):
    """One JSON object a line; an error's traceback as `exception_text` gives it."""

    def formatException(self, ei: ExcInfo) -> str:
        return exception_text(ei)
