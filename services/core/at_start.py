"""What a service's start does when what it needs (the SQL store, the Kafka broker) fails:
its outage is waited out, a mistake is refused, anything else is raised as it is.

The outage (down, starting, unreachable) passes by itself: a WARNING each try, then
another try after a pause, for as long as it lasts, as the stages wait once running. A
mistake in the settings (a password refused, a file that cannot be read) would be met
again by every try: the service exits 1 with one line naming the setting and what was
wrong, as it does for an invalid setting, without a traceback. SIGINT or SIGTERM while
waiting stops the service as it stops one running: exit 0. Each of `store_start` and
`broker_start` decides which failure is which, and says what it waits for.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from enum import Enum
from typing import Any, TypeVar

import tenacity

from services.core import background

T = TypeVar("T")

# The pause between two tries: 1 s, doubling, at most as long as a stage's pause while
# an outage lasts (pipeline.MAX_RETRY_PAUSE_SECONDS), so that what is back is used soon.
BACKOFF = background.Backoff(first=1.0, longest=5.0)
# A start stopped by SIGINT or SIGTERM (before serving, or while the app's lifespan
# starts: serve.Server): nothing served, nothing left to stop, no failure.
STOPPED_EXIT = 0
# A start that met a mistake no wait mends (before serving, or in the app's lifespan):
# the line naming the setting logged, then this status.
REFUSED_EXIT = 1


class Failure(Enum):
    """What an error met at a start says."""

    OUTAGE = "outage"  # down, starting or unreachable: passes by itself
    MISTAKE = "mistake"  # in the settings, or in the users they name: every try meets it
    OTHER = "other"  # neither (a migration that fails, a bug): raised as it is


class Refused(Exception):
    """A mistake no wait mends, met by a start once the service is about to serve (the
    app's lifespan, a stage's start): `line` (naming the setting) is logged already; a
    lifespan's start so ended exits REFUSED_EXIT (serve.Server), as the start before
    serving does."""

    def __init__(self, line: str) -> None:
        super().__init__(line)
        self.line = line


class Unusable(SystemExit):
    """What a command needs cannot be used: exits 1 with `line` (the setting named,
    never a password), without a traceback."""

    def __init__(self, line: str) -> None:
        super().__init__(line)
        self.line = line


def waited_out(attempt: Callable[[], T], *, failure: Callable[[BaseException], Failure],
               problem: Callable[[BaseException], str],
               waiting: Callable[[BaseException, str, float], str],
               refusal: Callable[[BaseException], str], stopped: str,
               logger: logging.Logger, extra: Mapping[str, Any],
               sleep: Callable[[float], None] = time.sleep) -> T:
    """`attempt`'s result, tried again after each outage with BACKOFF (`waiting`: the
    WARNING's line, given the error, its `problem` in one line and the pause); a mistake
    logged (`refusal`'s line: the service's logs are where its operators look) and exit 1;
    SIGINT or SIGTERM (what Kubernetes stops a pod with) meanwhile logs `stopped` and exits
    0 (nothing started, nothing to stop)."""

    def warn(state: tenacity.RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        pause = state.next_action.sleep if state.next_action is not None else 0.0
        assert error is not None  # tenacity waits only after a failed try here
        said = problem(error)
        logger.warning(waiting(error, said, pause), extra={
            **extra, "attempt": state.attempt_number, "retry_in_seconds": pause,
            "error": said})

    try:
        with _sigterm_as_sigint():
            return tenacity.Retrying(
                retry=tenacity.retry_if_exception(
                    lambda error: failure(error) is Failure.OUTAGE),
                wait=lambda state: BACKOFF.pause(state.attempt_number),
                before_sleep=warn, sleep=sleep, reraise=True,
            )(attempt)
    except KeyboardInterrupt:
        logger.info(stopped)
        raise SystemExit(STOPPED_EXIT) from None
    except Exception as error:
        if failure(error) is not Failure.MISTAKE:
            raise
        logger.error(refusal(error), extra=dict(extra))
        raise SystemExit(REFUSED_EXIT) from None


@contextlib.contextmanager
def _sigterm_as_sigint() -> Iterator[None]:
    """SIGTERM stops the wait as SIGINT does (the server, once started, installs its own
    handlers); in the main thread only, where Python runs signal handlers."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(_signal: int, _frame: object) -> None:
        raise KeyboardInterrupt

    before = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


async def at_once(attempt: Awaitable[T], *, failure: Callable[[BaseException], Failure],
                  refusal: Callable[[BaseException], str],
                  unreachable: Callable[[BaseException], str],
                  unusable: Callable[[str], Unusable]) -> T:
    """A command's, which never waits: `attempt`'s result, or its end at once in one
    line (exit 1, no traceback), `refusal`'s for a mistake, `unreachable`'s for an
    outage; anything else raised as it is."""
    try:
        return await attempt
    except Exception as error:
        found = failure(error)
        if found is Failure.OTHER:
            raise
        raise unusable(refusal(error) if found is Failure.MISTAKE
                       else unreachable(error)) from None


def without_secret(text: str, secret: str | None) -> str:
    """`text` (a driver's words about a failure), or, should it hold `secret` (a
    password), a line saying so instead: blotting the secret out of it would show a
    short one by what is left around it."""
    if secret and secret in text:
        return "(the driver's words hold the password: not shown)"
    return text
