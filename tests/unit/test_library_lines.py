"""The libraries' own lines while the broker is down (services/core/library_lines.py):
a kind repeated is written once an interval with the count held back; aiokafka's
connection errors as warnings of an outage; our own lines as logged."""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

import pytest
from aiokafka.errors import (
    AuthenticationFailedError,
    KafkaConnectionError,
    NodeNotReadyError,
    NotLeaderForPartitionError,
    TopicAuthorizationFailedError,
)

from services.core import library_lines
from tests.unit.test_logs import configured

UNREACHABLE = "Unable connect to node with id %s: %s"
FETCH_FAILED = "Failed fetch messages from %s: %s"


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def record(name: str = "aiokafka", msg: str = UNREACHABLE, args: tuple[Any, ...] = (
        1, ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 9092)")),
           level: int = logging.ERROR, **fields: Any) -> logging.LogRecord:
    made = logging.LogRecord(name, level, "client.py", 435, msg, args, None)
    for key, value in fields.items():
        setattr(made, key, value)
    return made


def written(lines: library_lines.LibraryLines, line: logging.LogRecord) -> bool:
    """Whether the record is written now (the lines held back it brings aside)."""
    return line in lines.admit(line)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def lines(clock: Clock) -> library_lines.LibraryLines:
    return library_lines.LibraryLines(30.0, clock=clock)


class TestRepeatedLines:
    def test_the_first_of_a_kind_is_written_then_one_an_interval_with_the_count_held(
            self, lines: library_lines.LibraryLines, clock: Clock) -> None:
        first = record()
        assert written(lines, first)
        assert not hasattr(first, "repeated")
        for node in range(1, 101):  # 100 more in the interval, with other arguments
            clock.now += 0.25
            assert not written(lines, record(args=(node, ConnectionRefusedError(111, "x"))))
        clock.now = 1_030.0
        next_one = record()
        assert written(lines, next_one)
        assert next_one.repeated == 100
        clock.now += 1.0
        assert not written(lines, record())
        clock.now += 29.0
        third = record()
        assert written(lines, third)
        assert third.repeated == 1

    def test_a_librarys_lines_under_warning_are_written_as_logged(
            self, lines: library_lines.LibraryLines) -> None:
        """No flood: a migration's steps, a server's start, each told."""
        steps = [record("alembic.runtime.migration", "Running upgrade %s -> %s, %s",
                        (f"v{n}", f"v{n + 1}", "step"), level=logging.INFO) for n in range(5)]
        assert [written(lines, step) for step in steps] == [True] * 5

    def test_a_kind_not_repeated_in_its_interval_is_written_without_a_count(
            self, lines: library_lines.LibraryLines, clock: Clock) -> None:
        assert written(lines, record())
        clock.now += 60.0
        again = record()
        assert written(lines, again)
        assert not hasattr(again, "repeated")

    def test_kinds_are_told_apart_by_logger_and_template(
            self, lines: library_lines.LibraryLines) -> None:
        error = NodeNotReadyError("node 1 not ready")
        assert written(lines, record())
        assert written(lines, record(msg="Unable to update metadata from %s", args=([1],)))
        assert written(lines, record("aiokafka.consumer.fetcher", FETCH_FAILED, (1, error)))
        assert written(lines, record("sqlalchemy.pool", FETCH_FAILED, (1, error)))
        assert not written(lines, record("aiokafka.consumer.fetcher", FETCH_FAILED, (2, error)))

    def test_our_own_lines_are_written_each_as_logged(
            self, lines: library_lines.LibraryLines) -> None:
        for name in ("services.core.pipeline", "services"):
            for _ in range(5):
                ours = record(name, "stage %s failed on a batch; retrying it", ("router",),
                              logging.WARNING, fault="outage")
                assert written(lines, ours)
                assert not hasattr(ours, "repeated")
        # Ours at ERROR with an aiokafka template is still ours, at its level.
        ours = record("services.core.kafka")
        assert written(lines, ours)
        assert ours.levelname == "ERROR"
        assert written(lines, record("services_other", "started", ()))
        assert not written(lines, record("services_other", "started", ()))

    def test_lines_held_back_are_told_with_the_next_line_of_any_kind(
            self, lines: library_lines.LibraryLines, clock: Clock) -> None:
        """The outage over, a kind may never come again: the last of its lines held
        back is written once its interval is over, with the next line logged, telling
        how many before it were held back; every line logged is written or counted."""
        assert written(lines, record())
        held = [record(args=(node, ConnectionRefusedError(111, "x"))) for node in range(5)]
        fetch = [record("aiokafka.consumer.fetcher", FETCH_FAILED,
                        (1, NodeNotReadyError("not ready"))) for _ in range(2)]
        assert lines.admit(fetch[0]) == [fetch[0]]
        for line in [*held, fetch[1]]:
            clock.now += 1.0
            assert lines.admit(line) == []
        clock.now = 1_029.0  # within the interval: nothing told yet
        ours = record("services.core.pipeline", "stage %s failed on a batch; retrying it",
                      ("router",), logging.WARNING)
        assert lines.admit(ours) == [ours]
        clock.now = 1_031.0
        later = record("services.core.pipeline", "stage %s resumed", ("router",),
                       logging.INFO)
        assert lines.admit(later) == [held[-1], fetch[1], later]
        assert held[-1].repeated == 4
        assert not hasattr(fetch[1], "repeated")  # the one held back
        assert not hasattr(later, "repeated")
        # Told once: a new interval begins for each.
        clock.now += 1.0
        assert lines.admit(again := record()) == []
        clock.now += 30.0
        assert lines.admit(ours) == [again, ours]

    def test_a_kind_coming_again_tells_its_own_count(
            self, lines: library_lines.LibraryLines, clock: Clock) -> None:
        assert written(lines, record())
        for _ in range(3):
            clock.now += 1.0
            assert not written(lines, record())
        clock.now += 30.0
        line = record()
        assert lines.admit(line) == [line]
        assert line.repeated == 3

    def test_a_librarys_line_with_a_traceback_is_written_each_time(
            self, lines: library_lines.LibraryLines) -> None:
        try:
            raise RuntimeError("sender failed")
        except RuntimeError:
            exc_info = sys.exc_info()
        for _ in range(3):
            failed = record("aiokafka.producer.sender", "Unexpected error in sender routine",
                            ())
            failed.exc_info = exc_info
            assert written(lines, failed)

    def test_kinds_past_their_interval_are_forgotten_beyond_the_most_held(
            self, lines: library_lines.LibraryLines, clock: Clock) -> None:
        """A library that writes its messages out (no template) makes a kind of each
        line: those held apart stay bounded."""
        for number in range(3 * library_lines._MOST_KINDS):
            clock.now += 0.1
            assert written(lines, record("somelib", f"request {number} failed", ()))
        assert len(lines._kinds) <= library_lines._MOST_KINDS

    def test_more_kinds_at_once_than_are_held_apart_are_written_as_logged(
            self, lines: library_lines.LibraryLines, clock: Clock) -> None:
        """Within one interval, past the most held: written, not remembered (nor
        forgotten again line after line)."""
        for number in range(library_lines._MOST_KINDS + 50):
            clock.now += 0.001
            assert written(lines, record("somelib", f"request {number} failed", ()))
        assert len(lines._kinds) == library_lines._MOST_KINDS


class TestTheKafkaClientsOutage:
    @pytest.mark.parametrize(("name", "msg", "args"), [
        ("aiokafka", UNREACHABLE, (1, ConnectionRefusedError(111, "refused"))),
        ("aiokafka", 'Unable connect to "%s:%s": %s', ("127.0.0.1", 9092, OSError("down"))),
        ("aiokafka", "Unable to update metadata from %s", ([1],)),
        ("aiokafka.consumer.fetcher", FETCH_FAILED, (1, NodeNotReadyError("not ready"))),
        ("aiokafka.consumer.group_coordinator", "Group Coordinator Request failed: %s",
         (NodeNotReadyError("not ready"),)),
        ("aiokafka.consumer.group_coordinator",
         "Heartbeat send request failed: %s. Will retry.", (KafkaConnectionError("closed"),)),
        ("aiokafka.consumer.group_coordinator",
         "Error sending %s to node %s [%s] -- marking coordinator dead",
         ("HeartbeatRequest", 1, KafkaConnectionError("closed"))),
        ("aiokafka.consumer.group_coordinator",
         "Heartbeat session expired - marking coordinator dead", ()),
    ])
    def test_a_connection_error_is_a_warning_of_an_outage_keeping_its_level(
            self, lines: library_lines.LibraryLines, name: str, msg: str,
            args: tuple[Any, ...]) -> None:
        line = record(name, msg, args)
        assert written(lines, line)
        assert (line.levelno, line.levelname) == (logging.WARNING, "WARNING")
        assert (line.fault, line.library_level) == ("outage", "ERROR")

    @pytest.mark.parametrize(("name", "msg", "args"), [
        ("aiokafka.consumer.fetcher", FETCH_FAILED,
         (1, TopicAuthorizationFailedError("tickets.incoming"))),
        # A password refused: a mistake to mend, not an outage to wait out.
        ("aiokafka", 'Unable connect to "%s:%s": %s',
         ("127.0.0.1", 9093, AuthenticationFailedError("SaslAuthenticationFailed"))),
    ])
    def test_another_error_in_the_same_template_keeps_its_level(
            self, lines: library_lines.LibraryLines, name: str, msg: str,
            args: tuple[Any, ...]) -> None:
        refused = record(name, msg, args)
        assert written(lines, refused)
        assert refused.levelname == "ERROR"
        assert not hasattr(refused, "fault")

    def test_a_refused_password_amid_the_outages_warnings_is_written(
            self, lines: library_lines.LibraryLines, clock: Clock) -> None:
        """The same template as a broker away, within its interval: another kind (by
        level), not a repeat of the outage's warning to hold back."""
        template, at = 'Unable connect to "%s:%s": %s', ("127.0.0.1", 9093)
        assert written(lines, record(msg=template, args=(*at, OSError("down"))))
        clock.now += 5.0
        refused = record(msg=template, args=(*at, AuthenticationFailedError("refused")))
        assert written(lines, refused)
        assert refused.levelname == "ERROR"
        clock.now += 1.0
        assert not written(lines, record(msg=template, args=(*at, OSError("down"))))

    @pytest.mark.parametrize(("msg", "args"), [
        ("Got error produce response: %s", (NodeNotReadyError("not ready"),)),
        ("Cannot send %r to %s: %r", (type("ProduceRequest_v7", (), {}), 1,
                                      NodeNotReadyError("not ready"))),
        # The leaders coming back with the broker: the error's class is passed.
        ("Got error produce response on topic-partition %s, retrying. Error: %s",
         ("TopicPartition(topic='tickets.events', partition=0)", NotLeaderForPartitionError)),
    ])
    def test_a_producers_warning_of_a_broker_away_tells_the_outage(
            self, lines: library_lines.LibraryLines, msg: str, args: tuple[Any, ...]) -> None:
        """Measured with the broker killed under producers sending
        (tests/integration/test_broker_outage_logs.py): logged at WARNING already, it
        says `fault` outage as the client's errors do."""
        line = record("aiokafka.producer.sender", msg, args, logging.WARNING)
        assert written(lines, line)
        assert (line.levelname, line.fault, line.library_level) == (
            "WARNING", "outage", "WARNING")

    @pytest.mark.parametrize(("msg", "args"), [
        ("Got error produce response: %s", (TopicAuthorizationFailedError("t"),)),
        ("Got error produce response on topic-partition %s, retrying. Error: %s",
         ("TopicPartition(topic='t', partition=0)", TopicAuthorizationFailedError)),
    ])
    def test_a_producers_warning_of_another_error_is_no_outage(
            self, lines: library_lines.LibraryLines, msg: str, args: tuple[Any, ...]) -> None:
        line = record("aiokafka.producer.sender", msg, args, logging.WARNING)
        assert written(lines, line)
        assert line.levelname == "WARNING"
        assert not hasattr(line, "fault")

    def test_other_lines_of_the_client_keep_their_level(
            self, lines: library_lines.LibraryLines) -> None:
        for line in (record(msg="Topic %s not found in cluster metadata", args=("t",)),
                     record(level=logging.INFO),
                     record("aiokafka.consumer.group_coordinator",
                            "Marking the coordinator dead (node %s)for group %s.", (1, "g"),
                            logging.WARNING)):
            level = line.levelname
            assert written(lines, line)
            assert line.levelname == level
            assert not hasattr(line, "library_level")


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_the_services_logging_collapses_the_flood(fmt: str) -> None:
    """logs.configure, the one set-up of every service, writes aiokafka's lines so: here
    a burst of one kind gives one line, as a warning of an outage with its fields."""
    with configured(fmt) as stream:
        # Once in 30 s, as README "On call" says.
        handler = logging.getLogger().handlers[0]
        assert isinstance(handler, library_lines.WritingLibraryLines)
        assert handler.lines.interval == 30.0
        for _ in range(50):
            logging.getLogger("aiokafka").error(UNREACHABLE, 1, ConnectionRefusedError(
                111, "Connect call failed ('127.0.0.1', 9092)"))
            logging.getLogger("services.core.pipeline").warning(
                "stage %s failed on a batch; retrying it", "router",
                extra={"fault": "outage"})
    written = stream.getvalue().splitlines()
    assert len(written) == 51
    [client] = [line for line in written if "Unable connect" in line]
    if fmt == "json":
        fields = json.loads(client)
        assert {key: fields[key] for key in ("level", "logger", "fault", "library_level")} \
            == {"level": "WARNING", "logger": "aiokafka", "fault": "outage",
                "library_level": "ERROR"}
    else:
        assert " WARNING Unable connect to node with id 1: " in client
        assert client.endswith(' library_level="ERROR" fault="outage"')


def test_the_counts_held_back_are_told_when_the_handler_closes() -> None:
    """A shutdown (SIGTERM, a stage's end) within an interval still tells them."""
    with configured("text") as stream:
        for node in range(5):
            logging.getLogger("somelib").error("disk %s failing", node)
        logging.getLogger().handlers[0].close()
    written = stream.getvalue().splitlines()
    assert len(written) == 2
    assert "disk 4 failing" in written[1]
    assert written[1].endswith(" repeated=3")


def test_errors_asked_for_alone_leave_out_the_outages_warnings() -> None:
    """LOG_LEVEL=ERROR: aiokafka's connection error, written as a warning, is not
    written; a refused password, an error, is."""
    with configured("text", "ERROR") as stream:
        client = logging.getLogger("aiokafka")
        client.error(UNREACHABLE, 1, ConnectionRefusedError(111, "refused"))
        client.error('Unable connect to "%s:%s": %s', "127.0.0.1", 9093,
                     AuthenticationFailedError("refused"))
    [written] = stream.getvalue().splitlines()
    assert " ERROR Unable connect to " in written
