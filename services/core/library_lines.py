"""The libraries' own log lines as ops on call read them.

While the Kafka broker is down, aiokafka logs each failed try of each of its clients at
ERROR: about 550 lines a second from the three services, all of a dozen kinds, and none
carrying anything of ours (README "Measured"). The services ride the outage out and say
so in their own lines, so those lines are
- collapsed: the first line of a kind (its logger and its message template, `record.msg`
  before its arguments) is written, then at most one an interval, carrying `repeated`,
  how many of its kind were held back since the one before; the last line held back of
  a kind that does not come again (the outage over) is written, telling that count, with
  the next line of any kind once its interval is over;
- the Kafka client's connection errors written at WARNING, with `fault` "outage" (as a
  stage's "failed on a batch; retrying it" says it) and the level aiokafka gave them as
  `library_level` (its producer's, logged at WARNING already, keep it).
Our own lines (`services.*`), a library's lines with a traceback (each may tell of
another failure) and its lines under WARNING (a migration run, a server started) are
written as logged.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import TextIO

OURS = "services"
_OURS_PREFIX = f"{OURS}."
INTERVAL_SECONDS = 30.0
# Kinds held apart at most; past it, those whose interval is over are forgotten (a library
# writing each message out, with no template, would make a kind of each line).
_MOST_KINDS = 1_000

# aiokafka's lines when it cannot reach a broker, as measured with the broker killed
# (README "Measured"); by logger and message template. An error passed to one (or an
# error's class: the producer names some so) is looked at too: only a connection's
# (faults.classify: an outage) makes it one of these. A producer's, sending while the
# broker is away (and its partitions' leaders while it comes back), are WARNINGs already;
# its coordinator's lines (FindCoordinator, InitProducerId) were not seen then: a
# transactional producer waits for a coordinator without a line while it cannot reach
# one (tests/integration/test_broker_outage_logs.py).
KAFKA_CLIENT_OUTAGE = frozenset({
    ("aiokafka.producer.sender", "Got error produce response: %s"),
    ("aiokafka.producer.sender", "Cannot send %r to %s: %r"),
    ("aiokafka.producer.sender",
     "Got error produce response on topic-partition %s, retrying. Error: %s"),
    ("aiokafka", "Unable connect to node with id %s: %s"),
    ("aiokafka", 'Unable connect to "%s:%s": %s'),
    ("aiokafka", "Unable to update metadata from %s"),
    ("aiokafka.consumer.fetcher", "Failed fetch messages from %s: %s"),
    ("aiokafka.consumer.group_coordinator", "Group Coordinator Request failed: %s"),
    ("aiokafka.consumer.group_coordinator", "Heartbeat send request failed: %s. Will retry."),
    ("aiokafka.consumer.group_coordinator",
     "Error sending %s to node %s [%s] -- marking coordinator dead"),
    ("aiokafka.consumer.group_coordinator",
     "Heartbeat session expired - marking coordinator dead"),
})


def is_ours(logger: str) -> bool:
    return logger.startswith(_OURS_PREFIX) or logger == OURS


def is_kafka_clients_outage(record: logging.LogRecord) -> bool:
    """One of aiokafka's lines for a broker it cannot reach, at WARNING or above."""
    if record.levelno < logging.WARNING or (record.name, record.msg) not in KAFKA_CLIENT_OUTAGE:
        return False
    # Here, not with this module: only a process with a Kafka client gets here (faults
    # holds the client's errors).
    from services.core import faults

    arguments = record.args if isinstance(record.args, tuple) else ()
    return all(faults.classify(error) is faults.Fault.OUTAGE
               for error in map(_error, arguments) if error is not None)


def _error(argument: object) -> BaseException | None:
    """An error passed to a line, or one of the class passed (classified alike: by its
    class and what it says of itself, `retriable`)."""
    if isinstance(argument, BaseException):
        return argument
    if isinstance(argument, type) and issubclass(argument, BaseException):
        return argument.__new__(argument)
    return None


def as_kafka_clients_outage(record: logging.LogRecord) -> None:
    """The record as a warning that the Kafka client met an outage, the level it was
    logged at kept as `library_level`."""
    record.library_level = record.levelname
    record.fault = "outage"
    record.levelno, record.levelname = logging.WARNING, logging.getLevelName(logging.WARNING)


# A kind of line: its logger, message template and level.
Key = tuple[str, str, int]


class _Kind:
    __slots__ = ("held", "last", "written_at")

    def __init__(self, written_at: float) -> None:
        self.written_at = written_at
        self.held = 0
        self.last: logging.LogRecord | None = None  # the last held back


class LibraryLines:
    """What a handler writes of the records it is given (see the module)."""

    def __init__(self, interval: float, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self._clock = clock
        self._kinds: dict[Key, _Kind] = {}
        self._due = math.inf  # when the first kind holding lines back ends its interval
        self._forgot_at = -math.inf  # when kinds past their interval were last forgotten
        self._lock = threading.Lock()  # a library may log from a thread of its own

    def admit(self, record: logging.LogRecord) -> list[logging.LogRecord]:
        """The lines to write now: the record, unless one of its kind was written within
        the interval; and, of each other kind whose interval ended holding lines back,
        the last held back, so that their count is told though none of them comes again
        (written with the next line of any kind)."""
        ours = is_ours(record.name) or bool(record.exc_info)
        if ours and self._due == math.inf:  # the common case, kept cheap: a line of ours
            return [record]
        now = self._clock()
        if not ours and is_kafka_clients_outage(record):
            as_kafka_clients_outage(record)
        # A library's INFO or DEBUG line (a migration run, a server started) is no flood:
        # written as logged.
        # By level too: aiokafka words a refused password as it words a broker away, and
        # that ERROR is no repeat of the outage's warnings.
        key = None if ours or record.levelno < logging.WARNING else (
            record.name, record.msg if isinstance(record.msg, str) else str(record.msg),
            record.levelno)
        with self._lock:
            lines = self._held_lines(now, key) if now >= self._due else []
            if key is None or self._written(key, record, now):
                lines.append(record)
        return lines

    def _written(self, key: Key, record: logging.LogRecord, now: float) -> bool:
        kind = self._kinds.get(key)
        if kind is not None and now - kind.written_at < self.interval:
            kind.held += 1
            kind.last = record
            self._due = min(self._due, kind.written_at + self.interval)
            return False
        if kind is not None and kind.held:
            record.repeated = kind.held
        if kind is None and len(self._kinds) >= _MOST_KINDS:
            if now - self._forgot_at < self.interval:
                return True  # more kinds at once than are told apart: written as logged
            self._forget_past(now)
            self._forgot_at = now
            if len(self._kinds) >= _MOST_KINDS:
                return True
        self._kinds[key] = _Kind(now)
        return True

    def _held_lines(self, now: float, coming: Key | None) -> list[logging.LogRecord]:
        """Of each kind past its interval with lines held back (but the one of the record
        coming, which tells their count itself), the last held back, telling how many
        before it were."""
        lines = []
        self._due = math.inf
        for key, kind in self._kinds.items():
            if not kind.held or key == coming:
                continue
            if now - kind.written_at < self.interval:
                self._due = min(self._due, kind.written_at + self.interval)
                continue
            last = kind.last
            assert last is not None
            if kind.held > 1:
                last.repeated = kind.held - 1
            lines.append(last)
            self._kinds[key] = _Kind(now)
        return lines

    def held_back(self) -> list[logging.LogRecord]:
        """Of each kind holding lines back, the last, telling how many before it were,
        whatever their interval (the process stops: none would be told otherwise)."""
        lines = []
        with self._lock:
            for kind in self._kinds.values():
                if kind.held and kind.last is not None:
                    if kind.held > 1:
                        kind.last.repeated = kind.held - 1
                    lines.append(kind.last)
                kind.held, kind.last = 0, None
            self._due = math.inf
        return lines

    def _forget_past(self, now: float) -> None:
        """Kinds whose interval is over (none holds lines back: `admit` wrote them)."""
        self._kinds = {key: kind for key, kind in self._kinds.items()
                       if now - kind.written_at < self.interval}


class WritingLibraryLines(logging.StreamHandler[TextIO]):
    """A stream handler writing what LibraryLines admits of each record."""

    def __init__(self, lines: LibraryLines) -> None:
        super().__init__()
        self.lines = lines

    def handle(self, record: logging.LogRecord) -> bool:
        # The level asked (LOG_LEVEL) is the handler's too: a library's error written as
        # a warning of an outage is not written where only errors are asked for.
        admitted = [line for line in self.lines.admit(record) if line.levelno >= self.level]
        for line in admitted:
            super().handle(line)
        return bool(admitted)

    def close(self) -> None:
        """The counts held back told before the stream is left (a shutdown, an exit)."""
        for line in self.lines.held_back():
            if line.levelno >= self.level:
                super().handle(line)
        super().close()
