"""A library's own lines met while a start tries (a Kafka client started, topics
ensured: broker_start.outage_waited_out), which its refusal would say again: held until
the try ends, then dropped if the start refuses (its one line names the setting and
quotes what the library met: on call, the first ERROR line they read is that one), or
written as logged if it does not.

The Kafka client logs a password refused at ERROR ('Unable connect to "host:port":
[Error 58] SaslAuthenticationFailed ...') before the start has said a word. Only the try's
own lines are held (those of its task, and of the tasks it starts, while it lasts): the
library's lines before and after it, those of other tasks, and ours, are written as they
come.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from contextvars import ContextVar

from services.core import library_lines


class Try:
    """A start's try, holding the library's lines `holds` takes."""

    def __init__(self, holds: Callable[[logging.LogRecord], bool]) -> None:
        self._holds = holds
        self._held: list[logging.LogRecord] = []
        self._lasts = True
        self._said = False

    def said(self) -> None:
        """The start refuses, in a line saying what those held say: they are dropped."""
        self._said = True

    def hold(self, record: logging.LogRecord) -> bool:
        if not self._lasts or library_lines.is_ours(record.name) or not self._holds(record):
            return False
        self._held.append(record)
        return True

    def end(self) -> None:
        self._lasts = False
        held, self._held = self._held, []
        if not self._said:
            for record in held:  # through the filters again: the try is over
                logging.getLogger(record.name).handle(record)


# The try of the task logging (a task started meanwhile sees it too, ended once it ends).
_TRYING: ContextVar[Try | None] = ContextVar("start_lines_trying", default=None)


@contextlib.contextmanager
def trying(holds: Callable[[logging.LogRecord], bool]) -> Iterator[Try]:
    """A start's try, for its lines `holds` takes to be held until it ends (by
    `written`, the filter of the handler writing the process's lines)."""
    attempt = Try(holds)
    token = _TRYING.set(attempt)
    try:
        yield attempt
    finally:
        _TRYING.reset(token)
        attempt.end()


def written(record: logging.LogRecord) -> bool:
    """A handler's filter: whether a line is written now, not held by a start's try."""
    attempt = _TRYING.get()
    return attempt is None or not attempt.hold(record)
