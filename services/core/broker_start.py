"""The Kafka broker at a start: reached, and the topics a service needs made, before it
serves.

A service waits out the broker's outage (not up yet, down, its DNS name not there yet,
its port open before it answers), as its stages do once running: a WARNING each try,
naming the bootstrap servers (KAFKA_BOOTSTRAP_SERVERS: hosts and ports, no password) and
what failed (unreachable, or taking connections without a Kafka answer: kafka.NoKafkaAnswer,
most often a listener of another security protocol), then another try with backoff until
the broker answers (at_start). A
mistake no wait mends is not waited on: the service exits 1 in one line naming the
setting and what was wrong (a SASL user or password refused, a SASL mechanism the broker
does not offer, a TLS file that cannot be used, a broker certificate the CA does not
sign, a refusal by the ACLs). A bootstrap address that is not host:port is refused with
the other settings (settings.Settings). A command never waits: the broker's outage or a
mistake ends it at once, in one line.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from aiokafka.errors import (
    AuthenticationFailedError,
    AuthenticationMethodNotSupported,
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    IllegalSaslStateError,
    SaslAuthenticationFailed,
    TopicAuthorizationFailedError,
    TransactionalIdAuthorizationFailed,
    UnsupportedSaslMechanismError,
)

from services.core import at_start, background, faults, kafka
from services.core.settings import Settings

logger = logging.getLogger(__name__)
T = TypeVar("T")

# OpenSSL's verify codes for a certificate that is not the host's
# (X509_V_ERR_HOSTNAME_MISMATCH, X509_V_ERR_IP_ADDRESS_MISMATCH).
_NOT_THE_HOSTS = (62, 64)
# TLS failures of a handshake cut short (the broker going down, a connection reset): an
# outage, where the others are the two ends disagreeing (protocol, certificates).
_TLS_CUT_SHORT = (ssl.SSLEOFError, ssl.SSLZeroReturnError, ssl.SSLSyscallError,
                  ssl.SSLWantReadError, ssl.SSLWantWriteError)
_CREDENTIALS = "KAFKA_SASL_USERNAME / KAFKA_SASL_PASSWORD"


@dataclass(frozen=True)
class Mistake:
    """Where a mistake no wait mends is: the setting, and how to mend it."""

    setting: str
    mend: str


def mistake_in(error: BaseException) -> Mistake | None:
    """The mistake `error`, met while reaching the broker, says was made; None if it
    says none (an outage, or anything else)."""
    if isinstance(error, BaseExceptionGroup):  # one per bootstrap server
        return next(filter(None, map(mistake_in, error.exceptions)), None)
    if isinstance(error, kafka.TlsFileUnusable):
        return Mistake(error.setting, f"correct {error.setting}")
    if isinstance(error, ssl.SSLCertVerificationError):
        if error.verify_code in _NOT_THE_HOSTS:
            return Mistake("KAFKA_BOOTSTRAP_SERVERS", "name the brokers as their certificates"
                           " do, or set KAFKA_SSL_CHECK_HOSTNAME=false")
        return Mistake("KAFKA_SSL_CAFILE", "give the CA that signed the brokers'"
                       " certificates in KAFKA_SSL_CAFILE, or renew a certificate out of"
                       " its dates")
    if isinstance(error, ssl.SSLError) and not isinstance(error, _TLS_CUT_SHORT):
        return Mistake("KAFKA_SECURITY_PROTOCOL", "correct KAFKA_SECURITY_PROTOCOL or the"
                       " KAFKA_SSL_* files")
    if isinstance(error, SaslAuthenticationFailed | AuthenticationFailedError):
        return Mistake(_CREDENTIALS, f"correct {_CREDENTIALS}, or the user on the brokers")
    if isinstance(error, IllegalSaslStateError):  # SASL asked of a listener without it
        return Mistake("KAFKA_SECURITY_PROTOCOL", "the listener takes no SASL: correct"
                       " KAFKA_SECURITY_PROTOCOL (PLAINTEXT or SSL), or the port")
    if isinstance(error, UnsupportedSaslMechanismError | AuthenticationMethodNotSupported):
        return Mistake("KAFKA_SASL_MECHANISM", "set KAFKA_SASL_MECHANISM to one the"
                       " brokers offer")
    if isinstance(error, kafka.TopicsNotMade) and not error.may_pass:
        return Mistake("KAFKA_TOPIC_PARTITIONS / KAFKA_REPLICATION_FACTOR", "set what the"
                       " brokers' rules allow, or have an operator create the topics with"
                       " Kafka's own tools")
    if isinstance(error, TopicAuthorizationFailedError | GroupAuthorizationFailedError
                  | ClusterAuthorizationFailedError | TransactionalIdAuthorizationFailed):
        return Mistake("KAFKA_SASL_USERNAME", "grant the user its ACLs"
                       " (docs/kafka-security.md), or correct KAFKA_SASL_USERNAME")
    return None


def failure(error: BaseException) -> at_start.Failure:
    """What `error`, met while reaching the broker and ensuring topics, says: a mistake
    no wait mends (`mistake_in`), the broker's outage as the stages take one once
    running (faults.classify: no answer, a refused or cut connection, a name not
    resolved yet, a broker not ready), or neither."""
    if mistake_in(error) is not None:
        return at_start.Failure.MISTAKE
    if isinstance(error, BaseExceptionGroup):  # one per bootstrap server
        found = {failure(each) for each in error.exceptions}
        return at_start.Failure.OUTAGE if found == {at_start.Failure.OUTAGE} \
            else at_start.Failure.OTHER
    if isinstance(error, kafka.TopicsNotMade):  # `may_pass`: not a mistake
        return at_start.Failure.OUTAGE
    if faults.classify(error) is faults.Fault.OUTAGE:
        return at_start.Failure.OUTAGE
    return at_start.Failure.OTHER


def where(settings: Settings) -> str:
    """Where the brokers are, for people to read: KAFKA_BOOTSTRAP_SERVERS' hosts and
    ports (it holds nothing else)."""
    return ",".join(part.strip() for part in settings.kafka_bootstrap_servers.split(","))


def problem(error: BaseException, settings: Settings) -> str:
    """What went wrong, in one line, the SASL password blotted out should it ever be
    in the words; each bootstrap server's, when several failed."""
    if isinstance(error, BaseExceptionGroup):
        return "; ".join(problem(each, settings) for each in error.exceptions)
    words = " ".join(str(error).split())
    name = type(error).__name__
    if isinstance(error, kafka.TlsFileUnusable) or name in words:
        text = words  # aiokafka's words name the class
    else:
        text = f"{name}: {words}" if words else name
    password = settings.kafka_sasl_password
    return at_start.without_secret(text, password.get_secret_value() if password else None)


def waiting(error: BaseException, said: str, pause: float, *, brokers: str) -> str:
    """The WARNING of a start waiting: for the brokers to answer, or to make the topics
    (TopicsNotMade that may pass, such as fewer brokers registered than
    KAFKA_REPLICATION_FACTOR while a cluster starts)."""
    if isinstance(error, kafka.TopicsNotMade):
        return (f"the Kafka broker (KAFKA_BOOTSTRAP_SERVERS) at {brokers} has not made the"
                f" topics (KAFKA_REPLICATION_FACTOR more than the brokers up?): waiting for"
                f" it, next try in {pause:g} s ({said})")
    if _gave_no_answer(error):
        return (f"the Kafka broker (KAFKA_BOOTSTRAP_SERVERS) at {brokers} gives no Kafka"
                f" answer: waiting for it, next try in {pause:g} s ({said})")
    return (f"the Kafka broker (KAFKA_BOOTSTRAP_SERVERS) at {brokers} is unreachable:"
            f" waiting for it, next try in {pause:g} s ({said})")


def _gave_no_answer(error: BaseException) -> bool:
    """Whether each bootstrap server took connections but gave no Kafka answer."""
    if isinstance(error, BaseExceptionGroup):
        return all(map(_gave_no_answer, error.exceptions))
    return isinstance(error, kafka.NoKafkaAnswer)


def refusal(error: BaseException, settings: Settings) -> str:
    """The line a mistake ends a start or a command with."""
    mistake = mistake_in(error)
    assert mistake is not None
    return (f"{mistake.setting}: the Kafka broker at {where(settings)} cannot be used:"
            f" {problem(error, settings)} (waiting would not mend it: {mistake.mend})")


async def _ready(settings: Settings, topic_names: Iterable[str]) -> None:
    await kafka.reached(settings)  # says a mistake (aiokafka's bootstrap would hide it)
    await kafka.ensure_topics(settings, topic_names, attempts=1)


def ready_blocking(settings: Settings, topic_names: Iterable[str], *,
                   sleep: Callable[[float], None] = time.sleep) -> None:
    """A service's start, before it serves: reach the broker and ensure `topic_names`
    (those its lifespan ensures: then found at once), waiting out the broker's outage for
    as long as it lasts (SIGINT stops the wait: exit 0); a mistake is logged and exits 1."""
    names = list(topic_names)
    brokers = where(settings)
    at_start.waited_out(
        lambda: asyncio.run(_ready(settings, names)),
        failure=failure, problem=lambda error: problem(error, settings),
        waiting=lambda error, said, pause: waiting(error, said, pause, brokers=brokers),
        refusal=lambda error: refusal(error, settings),
        stopped="stopped while waiting for the Kafka broker", logger=logger,
        extra={"brokers": brokers}, sleep=sleep)


async def outage_waited_out(start: Callable[[], Awaitable[T]], settings: Settings, *,
                            what: str, by: logging.Logger = logger,
                            extra: Mapping[str, Any] | None = None,
                            failures: background.FailuresInARow | None = None) -> T:
    """`start`'s result (a client started, topics ensured, once the service serves or
    is about to), the broker's outage waited out as `ready_blocking` waits for it: a
    WARNING on `by` each try ("`what` cannot start: ..."), the next after a pause
    (at_start.BACKOFF, counted in `failures`: the caller says when they end), for as
    long as it lasts. A mistake no wait mends is logged (`refusal`'s line, as the start
    before serving logs it) and raised as at_start.Refused (a lifespan's start then exits
    1, as that start does: serve.Server); anything else is raised. The one rule of a stage's
    start and of the parts a service's lifespan starts: the broker may go away between
    the start's check and them."""
    failures = failures if failures is not None else background.FailuresInARow(
        at_start.BACKOFF)
    while True:
        try:
            return await start()
        except Exception as failed:
            error = await _as_reached(failed, settings)
            found = failure(error)
            if found is at_start.Failure.MISTAKE:
                refused = f"{what}: {refusal(error, settings)}"
                by.error("%s", refused, extra=dict(extra or {}))
                raise at_start.Refused(refused) from error
            if found is not at_start.Failure.OUTAGE:
                raise error from failed
            pause = failures.failed()
            said = problem(error, settings)
            line = waiting(error, said, pause, brokers=where(settings))
            by.warning("%s cannot start: %s", what, line, extra={
                **(extra or {}), "attempt": failures.count, "retry_in_seconds": pause,
                "error": said})
            await asyncio.sleep(pause)


async def _as_reached(failed: Exception, settings: Settings) -> Exception:
    """What reaching the broker as a service's start does meets (kafka.reached), where a
    client's start met it unreachable: the client says a mistake as an outage ('Unable
    to bootstrap' for a password refused). `failed` if the broker answers now, or if
    `failed` was no outage."""
    if failure(failed) is not at_start.Failure.OUTAGE:
        return failed
    try:
        await kafka.reached(settings)
    except Exception as met:
        return met
    return failed


async def topics_ensured(settings: Settings, topic_names: Iterable[str], *,
                         what: str) -> frozenset[str]:
    """A lifespan's kafka.ensure_topics, the broker's outage waited out
    (`outage_waited_out`); the topics the user may not create, as it returns them."""
    names = list(topic_names)
    return await outage_waited_out(
        lambda: kafka.ensure_topics(settings, names, attempts=1), settings, what=what)


class BrokerUnusable(at_start.Unusable):
    """The broker cannot be used by a command: exits 1 with `line`, without a traceback."""


async def reached(settings: Settings) -> None:
    """A command's: reach the broker, or end at once in one line, whatever the failure
    (a wait bounded by kafka.REACH_SECONDS a bootstrap server)."""
    await at_start.at_once(
        kafka.reached(settings), failure=failure,
        refusal=lambda error: refusal(error, settings),
        unreachable=lambda error: unreachable(error, settings), unusable=BrokerUnusable)


async def topics_made(settings: Settings, topic_names: Iterable[str]) -> None:
    """A command's: reach the broker and make the topics missing among `topic_names`, or
    end at once in one line, whatever the failure."""
    await at_start.at_once(
        _ready(settings, topic_names), failure=failure,
        refusal=lambda error: refusal(error, settings),
        unreachable=lambda error: unreachable(error, settings), unusable=BrokerUnusable)


def unreachable(error: BaseException, settings: Settings) -> str:
    """The line a command ends with when it meets what a start waits out."""
    if isinstance(error, kafka.TopicsNotMade):
        return (f"KAFKA_REPLICATION_FACTOR: the Kafka broker at {where(settings)} has not"
                f" made the topics: {problem(error, settings)} (fewer brokers up than"
                " KAFKA_REPLICATION_FACTOR? run again once they are)")
    if _gave_no_answer(error):
        return (f"KAFKA_BOOTSTRAP_SERVERS / KAFKA_SECURITY_PROTOCOL: the Kafka broker at"
                f" {where(settings)} gives no Kafka answer: {problem(error, settings)}"
                " (correct either, and run again)")
    return (f"KAFKA_BOOTSTRAP_SERVERS: the Kafka broker at {where(settings)} is unreachable:"
            f" {problem(error, settings)} (start it, or correct KAFKA_BOOTSTRAP_SERVERS, and"
            " run again)")
