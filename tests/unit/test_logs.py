"""The services' log lines: one JSON object each, with the service, the level, the logger,
the message and the fields passed as `extra`."""

from __future__ import annotations

import ast
import asyncio
import contextlib
import importlib.util
import io
import json
import logging
import sqlite3
import tomllib
from collections.abc import Iterator
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import fastapi
import httpx
import pytest
import sqlalchemy.exc
import uvicorn
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from pydantic import ValidationError

from services.core import faults, logs, serve, tickets
from services.core.settings import Settings
from tests.faults.test_broker_outage import requests_in_the_window


@contextlib.contextmanager
def configured(fmt: str = "json", level: str = "INFO") -> Iterator[io.StringIO]:
    """The logs configured as a service configures them, written into the stream yielded;
    the root logger as it was afterwards."""
    root = logging.getLogger()
    handlers, saved = root.handlers[:], root.level
    logs.configure(Settings(log_format=fmt, log_level=level), service="router")
    stream = io.StringIO()
    handler = root.handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stream)
    try:
        yield stream
    finally:
        root.handlers[:] = handlers
        root.setLevel(saved)


@pytest.fixture
def written() -> Iterator[io.StringIO]:
    with configured() as stream:
        yield stream


def test_a_line_is_one_json_object_with_its_fields(written: io.StringIO) -> None:
    logging.getLogger("services.router.intake").info(
        "ticket accepted", extra={"ticket_id": "t-1", "department": "klantenservice é",
                                  "at": datetime(2026, 11, 30, 9, 0, tzinfo=UTC)})
    line = written.getvalue()
    assert line.count("\n") == 1
    record = json.loads(line)
    assert {key: record[key] for key in ("level", "logger", "message", "service",
                                         "ticket_id", "department", "at")} == {
        "level": "INFO", "logger": "services.router.intake", "message": "ticket accepted",
        "service": "router", "ticket_id": "t-1", "department": "klantenservice é",
        "at": "2026-11-30T09:00:00+00:00"}
    assert "time" in record
    # Written by orjson: compact, UTF-8 as is (the standard library's json, slower,
    # wrote ", " and ": " between fields and \\u escapes).
    assert '"level":"INFO"' in line and "klantenservice é" in line


def test_the_broker_outage_test_counts_the_intakes_unanswered_commits(
        written: io.StringIO, tmp_path: Path) -> None:
    """The fault test reads the intake's log for the transactions whose commit went
    unanswered (their callers got 503 for a ticket the broker may have committed); it
    once looked for the standard library's spacing and counted none of these lines."""
    publisher = logging.getLogger("services.core.transactional_publisher")
    publisher.warning("transaction not committed",
                      extra={"requests": 3, "error": "timeout", "commit_sent": True})
    publisher.warning("transaction not committed",
                      extra={"requests": 5, "error": "refused", "commit_sent": False})
    (tmp_path / "router.log").write_text(written.getvalue() + "a runtime's own line\n")
    assert requests_in_the_window(tmp_path) == 3


@pytest.mark.parametrize("level", ["INFO", "DEBUG"])
async def test_an_http_clients_request_lines_never_show_its_url(level: str) -> None:
    """A callback's URL may hold the platform's token in its query: httpx's own request
    line (INFO) and httpcore's (DEBUG) stay out of the logs."""
    with configured(level=level) as stream:
        transport = httpx.MockTransport(lambda request: httpx.Response(200))
        async with httpx.AsyncClient(transport=transport) as client:
            answer = await client.post("http://127.0.0.1:9/hooks?access_token=SeCrEt-7",
                                       content=b"{}")
        assert answer.status_code == 200
        logging.getLogger("services.webhooks").log(logging.getLevelName(level), "sent")
    written = stream.getvalue()
    assert "sent" in written  # the handler wrote at this level
    assert "SeCrEt-7" not in written


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_uvicorns_lines_carry_no_terminal_colours(fmt: str) -> None:
    """uvicorn passes its message again with ANSI escapes as `color_message`: noise in a
    line, and an escape character in a log store. Its line as it logs it, served as a
    service is (serve.config), keeps its message and loses that copy."""
    with configured(fmt) as stream:
        server = uvicorn.Server(serve.config(fastapi.FastAPI(), Settings(), port=8080))
        server.config.load()  # as serving does, before this line
        server._log_started_message([])
    written = stream.getvalue()
    assert "Uvicorn running on http://127.0.0.1:8080 (Press CTRL+C to quit)" in written
    assert "color_message" not in written
    assert "\x1b" not in written and "\\u001b" not in written


PYPROJECT = Path(__file__).parents[2] / "pyproject.toml"


def runtime_libraries() -> set[str]:
    """The modules of the services' dependencies (pyproject.toml's) and of theirs, as
    installed: every library whose loggers may reach the services' logs."""
    project = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]
    wanted = [Requirement(given) for given in project["dependencies"]]
    found: set[str] = set()
    while wanted:
        requirement = wanted.pop()
        if canonicalize_name(requirement.name) in found:
            continue
        found.add(canonicalize_name(requirement.name))
        extras = ["", *requirement.extras]
        wanted += [needed for needed in map(Requirement, metadata.requires(requirement.name)
                                             or [])
                   if needed.marker is None
                   or any(needed.marker.evaluate({"extra": extra}) for extra in extras)]
    return {module for module, distributions in metadata.packages_distributions().items()
            if any(canonicalize_name(name) in found for name in distributions)}


def test_no_library_passes_an_extra_for_a_terminal_alone_but_those_left_out() -> None:
    """logs.FOR_A_TERMINAL names the extras the libraries pass: read from their logging
    calls, so that a new one after an upgrade or a new dependency is seen here, not in
    ops' logs."""
    passed: set[str] = set()
    libraries = runtime_libraries()
    assert {"uvicorn", "aiokafka", "sqlalchemy", "anyio", "rich"} <= libraries
    for library in sorted(libraries):
        spec = importlib.util.find_spec(library)
        if spec is None or spec.origin is None:
            continue  # not importable here (a name a distribution records), a namespace
        origin = Path(spec.origin)
        sources = (origin.parent.rglob("*.py") if spec.submodule_search_locations
                   else [origin] if origin.suffix == ".py" else [])
        for source in sources:
            text = source.read_text(encoding="utf-8")
            if "extra=" not in text:
                continue
            for call in ast.walk(ast.parse(text)):
                if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
                        and call.func.attr in LOGGING_CALLS):
                    continue
                for keyword in call.keywords:
                    if keyword.arg != "extra":
                        continue
                    if isinstance(keyword.value, ast.Dict):
                        passed |= {key.value for key in keyword.value.keys
                                   if isinstance(key, ast.Constant)}
                    elif isinstance(keyword.value, ast.Call):
                        passed |= {named.arg for named in keyword.value.keywords
                                   if named.arg is not None}
    assert "color_message" in passed  # the reading finds uvicorn's
    assert passed <= logs.FOR_A_TERMINAL


LOGGING_CALLS = {"debug", "info", "warning", "warn", "error", "exception", "critical", "log"}


def test_a_text_line_carries_the_fields_too() -> None:
    """LOG_FORMAT=text: what a JSON line gives as fields follows the message, so that a
    warning naming a topic and its count names them in either format."""
    formatter = logs.TextWithFields("%(levelname)s %(message)s")
    record = logging.makeLogRecord({
        "levelname": "WARNING", "msg": "topic keeps its partition count",
        "topic": "tickets.incoming", "partitions": 1, "reason": "two words",
        "at": datetime(2026, 11, 30, 9, 0, tzinfo=UTC)})
    assert formatter.format(record) == (
        'WARNING topic keeps its partition count topic="tickets.incoming" partitions=1'
        ' reason="two words" at="2026-11-30T09:00:00+00:00"')
    plain = logging.makeLogRecord({"levelname": "INFO", "msg": "started"})
    assert formatter.format(plain) == "INFO started"


@pytest.mark.parametrize("formatter", [
    logs.TextWithFields("%(asctime)s %(message)s"),
    logs.JsonWithoutData("%(asctime)s %(message)s")])
def test_a_lines_time_is_loggings_own(formatter: logging.Formatter) -> None:
    """A line's time, its second written once a second (logs._TimeBySecond), is the
    standard library's text of it: each record's own second and milliseconds, moments
    apart in one second, across the next and back, and with a date format of its own."""
    plain = logging.Formatter()
    for created in (1_796_000_000.25, 1_796_000_000.999, 1_796_000_001.0, 1_796_000_001.5,
                    1_796_000_000.001, 1_796_003_599.9999, 1_796_003_600.0, 86_399.5):
        record = logging.makeLogRecord({"msg": "m", "created": created,
                                        "msecs": int((created - int(created)) * 1000) + 0.0})
        assert formatter.formatTime(record) == plain.formatTime(record)
        assert formatter.formatTime(record, "%H:%M") == plain.formatTime(record, "%H:%M")


# Out of the frames' source lines, which a traceback shows.
TICKET_FULL_OF_DATA = {"subject": "Jane Doe, born 1980-01-01" * 30,
                       "attributes": {"jane@x.org": [1]}}
ROW_REFUSED = "Failing row contains (Jane Doe, jane@x.org)"


class TestAnErrorsTracebackQuotesNoData:
    """`logger.exception` (a background task, uvicorn's for a request that failed) prints
    an error's chain: pydantic's message quotes the input it refused, PostgreSQL's the row
    it did not take. Logged, each is told by its frames and class; a message only where
    it cannot repeat data."""

    @staticmethod
    def logged(fmt: str) -> str:
        with configured(fmt) as stream:
            try:
                try:
                    tickets.Ticket.model_validate(TICKET_FULL_OF_DATA)
                except ValidationError as refused:
                    raise RuntimeError(ROW_REFUSED) from refused
            except RuntimeError:
                logging.getLogger("services.core.background").exception(
                    "periodic task failed", extra={"task": "escalation"})
            try:
                raise ConnectionRefusedError(111, "Connect call failed ('db', 5432)")
            except OSError:
                logging.getLogger("services.core.leases").warning("lease not renewed",
                                                                  exc_info=True)
        return stream.getvalue()

    @pytest.mark.parametrize("fmt", ["json", "text"])
    def test_messages_that_may_hold_data_are_left_out(self, fmt: str) -> None:
        written = self.logged(fmt)
        for data in ("Jane", "1980", "jane@x.org"):
            assert data not in written
        # The frames, the classes and the fields that failed are still there.
        assert written.count("Traceback (most recent call last)") == 3
        assert "test_logs.py" in written
        assert "subject: Value should have at most 500 items" in written
        assert f"RuntimeError: {logs.NOT_LOGGED}" in written
        assert "direct cause of the following exception" in written

    @pytest.mark.parametrize("fmt", ["json", "text"])
    def test_a_connections_message_is_kept(self, fmt: str) -> None:
        assert "Connect call failed ('db', 5432)" in self.logged(fmt)

    def test_a_stores_outage_is_told_but_not_the_row_it_refused(self) -> None:
        """What ops on call read first (the store locked, unreachable) stays; a store's
        refusal of a row (its message may quote the row) is left out."""
        locked = sqlalchemy.exc.OperationalError("UPDATE routed_tickets ...", {},
                                                 sqlite3.OperationalError("database is locked"))
        refused = sqlalchemy.exc.IntegrityError("INSERT ...", {}, sqlite3.IntegrityError(
            "NOT NULL constraint failed; Failing row contains (Jane Doe)"))
        assert faults.classify(locked) is faults.Fault.OUTAGE
        assert "database is locked" in logs.said(locked)
        assert logs.said(refused) == logs.NOT_LOGGED


def _task_group_failure() -> BaseExceptionGroup[Exception]:
    """What a TaskGroup raises when its tasks fail (the webhook worker's sends: a store
    that cannot be reached, and an error whose message holds data)."""
    async def unreachable() -> None:
        raise ConnectionRefusedError(111, "Connect call failed ('db', 5432)")

    async def refused() -> None:
        raise ValueError(ROW_REFUSED)

    async def run() -> None:
        async with asyncio.TaskGroup() as group:
            group.create_task(unreachable())
            group.create_task(refused())

    try:
        asyncio.run(run())
    except BaseExceptionGroup as failed:
        return failed
    raise AssertionError("the task group did not fail")


def test_a_groups_errors_are_told_each_as_said_tells_it() -> None:
    """A TaskGroup's error is only the group: ops read what failed in its sub-exceptions
    (as traceback.format_exception prints them), each by its frames and class, and its
    message where `said` keeps it; none repeats data."""
    failed = _task_group_failure()
    text = logs.exception_text((type(failed), failed, failed.__traceback__))
    assert "Connect call failed ('db', 5432)" in text
    assert "ConnectionRefusedError" in text and "ValueError" in text
    assert "in unreachable" in text and "in refused" in text  # their frames
    assert "Jane" not in text and "jane@x.org" not in text
