"""The libraries' own log lines as ops on call read them.

While the Kafka broker is down, aiokafka logs each failed try of each of its clients at
ERROR: about 550 lines a second from the three services, all of a dozen kinds, and none
carrying anything of ours (README "Measured"). The services ride the outage out and say
so in their own lines, so those lines are
- collapsed: the first line of a kind (its logger and its message template, `record.msg`
  before its arguments) is written, then at most one an interval, carrying `repeated`,
  how many of its kind were held back since the one before;
- the Kafka client's connection errors written at WARNING, with `fault` "outage" (as a
  stage's "failed on a batch; retrying it" says it) and the level aiokafka gave them as
  `library_level`.
Our own lines (`services.*`) and a library's lines with a traceback (each may tell of
another failure) are written as logged.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

OURS = "services"
INTERVAL_SECONDS = 30.0
# Kinds held apart at most; past it, those whose interval is over are forgotten (a library
# writing each message out, with no template, would make a kind of each line).
_MOST_KINDS = 1_000

# aiokafka's lines when it cannot reach a broker, as measured with the broker killed
# (README "Measured"); by logger and message template. An error passed to one is looked at
# too: only a connection's (faults.classify: an outage) makes it one of these.
KAFKA_CLIENT_OUTAGE = frozenset({
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
    return logger == OURS or logger.startswith(f"{OURS}.")


def is_kafka_clients_outage(record: logging.LogRecord) -> bool:
    """One of aiokafka's lines for a broker it cannot reach, above WARNING."""
    if record.levelno <= logging.WARNING or (record.name, record.msg) not in KAFKA_CLIENT_OUTAGE:
        return False
    # Here, not with this module: only a process with a Kafka client gets here (faults
    # holds the client's errors).
    from services.core import faults

    arguments = record.args if isinstance(record.args, tuple) else ()
    return all(faults.classify(error) is faults.Fault.OUTAGE for error in arguments
               if isinstance(error, BaseException))


def as_kafka_clients_outage(record: logging.LogRecord) -> None:
    """The record as a warning that the Kafka client met an outage, the level it was
    logged at kept as `library_level`."""
    record.library_level = record.levelname
    record.fault = "outage"
    record.levelno, record.levelname = logging.WARNING, logging.getLevelName(logging.WARNING)


class _Kind:
    __slots__ = ("held", "written_at")

    def __init__(self, written_at: float) -> None:
        self.written_at = written_at
        self.held = 0


class LibraryLines(logging.Filter):
    """A handler's filter: the libraries' lines as ops read them (see the module)."""

    def __init__(self, interval: float, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.interval = interval
        self._clock = clock
        self._kinds: dict[tuple[str, str], _Kind] = {}
        self._lock = threading.Lock()  # a library may log from a thread of its own

    def filter(self, record: logging.LogRecord) -> bool:
        if is_ours(record.name) or record.exc_info:
            return True
        if is_kafka_clients_outage(record):
            as_kafka_clients_outage(record)
        key = (record.name, record.msg if isinstance(record.msg, str) else str(record.msg))
        now = self._clock()
        with self._lock:
            kind = self._kinds.get(key)
            if kind is not None and now - kind.written_at < self.interval:
                kind.held += 1
                return False
            if kind is not None and kind.held:
                record.repeated = kind.held
            if kind is None and len(self._kinds) >= _MOST_KINDS:
                self._forget_past(now)
            self._kinds[key] = _Kind(now)
        return True

    def _forget_past(self, now: float) -> None:
        self._kinds = {key: kind for key, kind in self._kinds.items()
                       if now - kind.written_at < self.interval}
