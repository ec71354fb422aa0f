"""Kafka clients built in one place, with the settings every service shares."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import (
    Awaitable,
    Callable,
    Coroutine,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.conn import collect_hosts, create_conn
from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    InvalidReplicationFactorError,
    KafkaConnectionError,
    KafkaError,
    TopicAlreadyExistsError,
    TopicAuthorizationFailedError,
    for_code,
)
from aiokafka.helpers import create_ssl_context
from aiokafka.protocol.metadata import MetadataRequest

from services.core import background, envelope, kafka_tuning, topics
from services.core.settings import Settings

logger = logging.getLogger(__name__)
kafka_tuning.apply()


def connection_options(settings: Settings) -> dict[str, Any]:
    """Where the brokers are and how to authenticate to them: the keyword arguments
    every aiokafka client (producer, consumer, admin) is built with. A TLS file that
    cannot be used raises TlsFileUnusable, naming its setting."""
    protocol = settings.kafka_security_protocol
    options: dict[str, Any] = {"bootstrap_servers": settings.kafka_bootstrap_servers,
                               "security_protocol": protocol}
    if protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = tls_context(settings)
    if protocol in ("SASL_PLAINTEXT", "SASL_SSL"):
        password = settings.kafka_sasl_password
        options |= {"sasl_mechanism": settings.kafka_sasl_mechanism,
                    "sasl_plain_username": settings.kafka_sasl_username,
                    "sasl_plain_password": password.get_secret_value() if password else None}
    return options


class TlsFileUnusable(ssl.SSLError):
    """A TLS file a setting names cannot be used (unreadable, not PEM, a key that is not
    the certificate's). An ssl.SSLError still, as the one it stands for (or an OSError
    reading the file): `setting` names the setting, `file` the path."""

    def __init__(self, setting: str, file: Path, error: OSError) -> None:
        words = " ".join(str(error).split()) or type(error).__name__
        self.said = f"{file} cannot be used as a TLS file: {type(error).__name__}: {words}"
        super().__init__(self.said)
        self.setting = setting
        self.file = file

    def __str__(self) -> str:  # not OSError's, which reads its arguments as errno, text
        return self.said


@contextlib.contextmanager
def _loading(setting: str, file: Path) -> Iterator[None]:
    try:
        yield
    except OSError as error:  # ssl.SSLError among them
        raise TlsFileUnusable(setting, file, error) from error


def tls_context(settings: Settings) -> ssl.SSLContext:
    """aiokafka's context (its create_ssl_context), each file loaded under its setting."""
    cafile, certfile = settings.kafka_ssl_cafile, settings.kafka_ssl_certfile
    context: ssl.SSLContext
    if cafile:
        with _loading("KAFKA_SSL_CAFILE", cafile):
            context = create_ssl_context(cafile=str(cafile))
    else:
        context = create_ssl_context()  # the system's CAs
    if certfile:
        keyfile = settings.kafka_ssl_keyfile
        setting = "KAFKA_SSL_CERTFILE / KAFKA_SSL_KEYFILE" if keyfile else "KAFKA_SSL_CERTFILE"
        with _loading(setting, certfile):
            context.load_cert_chain(str(certfile), str(keyfile) if keyfile else None)
    context.check_hostname = settings.kafka_ssl_check_hostname
    return context


# How long reaching a bootstrap server (TLS, SASL) may take before it counts as no answer.
REACH_SECONDS = 10.0
# How long the look at a server that gave no Kafka answer may take (NoKafkaAnswer).
_LOOK_SECONDS = 2.0


class NoKafkaAnswer(KafkaConnectionError):  # type: ignore[misc]  # aiokafka is untyped
    """A bootstrap server that takes connections but gave no Kafka answer: a listener of
    another security protocol (a TLS one, spoken to in plain text, closes the
    connection), or no Kafka broker at all. Waited out as any broker not answering (one
    starting, or going down, may do the same), but said as it is, not as unreachable."""

    def __init__(self, host: str, port: int, protocol: str, cause: BaseException, *,
                 handshake: bool = False) -> None:
        said, name = " ".join(str(cause).split()), type(cause).__name__
        met = said if name in said else f"{name}: {said}" if said else name  # aiokafka's
        if handshake:  # the versions (TLS, SASL) answered; the first request was not
            super().__init__(
                f"{host}:{port} answered the handshake, then not its first request ({met}): a"
                f" listener of another security protocol than"
                f" KAFKA_SECURITY_PROTOCOL={protocol} (one that wants SASL?)")
            return
        super().__init__(
            f"{host}:{port} took the connection, then gave no Kafka answer ({met}): not a"
            f" Kafka listener, or one of another security protocol than"
            f" KAFKA_SECURITY_PROTOCOL={protocol}")


async def _takes_connections(host: str, port: int) -> bool:
    """Whether `host:port` takes a TCP connection (closed at once)."""
    try:
        async with asyncio.timeout(_LOOK_SECONDS):
            _, writer = await asyncio.open_connection(host, port)
    except OSError:  # TimeoutError is an OSError
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


async def reached(settings: Settings) -> None:
    """Connect to a bootstrap server as every client does (TLS, SASL) and ask it one
    request (the brokers, no topics: a listener that wants SASL answers the handshake,
    then closes at the first request), then close: returns at the first that answers,
    else raises what each met (the one error, or an ExceptionGroup of them: a password
    refused, a certificate not trusted, no answer), not aiokafka's 'Unable to
    bootstrap', which hides it."""
    options = connection_options(settings)
    del options["bootstrap_servers"]
    errors: list[Exception] = []
    for host, port, _ in collect_hosts(settings.kafka_bootstrap_servers, randomize=False):
        connection = None
        try:
            async with asyncio.timeout(REACH_SECONDS):  # the whole: TLS, SASL's steps
                connection = await create_conn(host, port, client_id="reach",
                                               request_timeout_ms=int(REACH_SECONDS * 1000),
                                               **options)
                await connection.send(MetadataRequest([]))
        except (KafkaConnectionError, TimeoutError) as error:
            # Connected, then no answer? (A TLS error is the TLS listener's answer.)
            answered = connection is not None
            took = answered or await _takes_connections(host, port)
            errors.append(NoKafkaAnswer(host, port, settings.kafka_security_protocol, error,
                                        handshake=answered) if took else error)
            continue
        except (KafkaError, OSError) as error:  # TimeoutError is an OSError
            errors.append(error)
            continue
        finally:
            if connection is not None:  # its socket too
                await asyncio.wait([connection.close()], timeout=REACH_SECONDS)
        return
    if len(errors) == 1:
        raise errors[0]
    raise ExceptionGroup("no bootstrap server answered", errors)


# How long a cancelled start may go on to its end (see `_start_whole`).
START_GRACE_SECONDS = 10.0


async def _start_whole(start: Callable[[], Awaitable[None]],
                       stop: Callable[[], Awaitable[None]]) -> None:
    """Start a client; if cancelled meanwhile, let the start end, stop the client, and
    pass the cancellation on.

    aiokafka keeps the bootstrap connection in a local variable until the broker has
    answered its metadata request, so a start cancelled in between leaves a connected
    socket that `stop()` cannot reach (aio-libs/aiokafka#715). Starts are cancelled by
    a stage stopped while it starts and by a publish timing out."""
    starting = asyncio.ensure_future(start())
    try:
        await asyncio.shield(starting)
        # Let the background tasks the start created begin: aiokafka 0.14 lets the
        # cancellation out of `stop()` for a task cancelled before it ever ran (a client
        # stopped right after its start).
        await asyncio.sleep(0)
    except asyncio.CancelledError:
        await asyncio.wait([starting], timeout=START_GRACE_SECONDS)
        if not starting.done():
            starting.cancel()  # a broker that long silent: the socket goes with the process
        elif not starting.cancelled() and starting.exception() is None:
            # Let the background tasks the start created begin: aiokafka 0.14 lets the
            # cancellation out of `stop()` for a task cancelled before it ever ran.
            await asyncio.sleep(0)
        await stop()
        raise


class Producer(AIOKafkaProducer):  # type: ignore[misc]  # aiokafka is untyped
    async def start(self) -> None:
        await _start_whole(super().start, self.stop)


class Consumer(AIOKafkaConsumer):  # type: ignore[misc]  # aiokafka is untyped
    async def start(self) -> None:
        await _start_whole(super().start, self.stop)


def producer(settings: Settings, *, client_id: str,
             transactional_id: str | None = None) -> AIOKafkaProducer:
    """An idempotent producer that waits for all in-sync replicas (and, with a
    transactional id, writes in transactions)."""
    return Producer(
        **connection_options(settings),
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        transactional_id=transactional_id,
        linger_ms=kafka_tuning.linger_ms(transactional=transactional_id is not None),
        request_timeout_ms=int(settings.produce_timeout_seconds * 1000),
    )


def consumer(
    settings: Settings, *topics: str, group_id: str | None, client_id: str,
    offset_reset: str = "earliest", fetch_min_bytes: int = 1,
) -> AIOKafkaConsumer:
    """A consumer that never commits on its own: callers commit after their output is
    acked. The broker answers its fetch once `fetch_min_bytes` are waiting, or after
    the fetch wait."""
    return Consumer(
        *topics,
        **connection_options(settings),
        client_id=client_id,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset=offset_reset,
        isolation_level="read_committed",
        fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
        fetch_min_bytes=fetch_min_bytes,
    )


async def positioned(consumer: AIOKafkaConsumer) -> None:
    """Fix now the position of each partition assigned to `consumer` (started, without a
    group): a reader from the latest is at the end as it is now, and reads every record
    written after, not at the end as its first fetch finds it (which misses those written
    in between)."""
    for partition in consumer.assignment():
        await consumer.position(partition)


async def caught_up(consumer: AIOKafkaConsumer, targets: Mapping[TopicPartition, int]) -> bool:
    """Whether the consumer has read each partition up to its target offset (those that
    were the ends when a reader from the start began: it has caught up)."""
    for partition, offset in targets.items():
        if await consumer.position(partition) < offset:
            return False
    return True


def admin(settings: Settings, *, client_id: str) -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(**connection_options(settings), client_id=client_id)


DAY_MS = 24 * 3600 * 1000


def retention_days(topic: str) -> int | None:
    """The retention our services give `topic` when they create it; None: the broker's."""
    if topic in topics.RETENTION_DAYS:
        return topics.RETENTION_DAYS[topic]
    return topics.DEPARTMENT_LANE_RETENTION_DAYS if topics.department_of(topic) else None


def _topic_configs(topic: str) -> dict[str, str]:
    if topic in topics.COMPACTED:
        return {"cleanup.policy": "compact"}
    days = retention_days(topic)
    return {} if days is None else {"retention.ms": str(days * DAY_MS)}


def new_topic(settings: Settings, name: str) -> NewTopic:
    """`name` as our services and `routing topics` make it: the partitions and replicas of
    the settings, its retention, or compacted (topics.COMPACTED)."""
    return NewTopic(name, settings.kafka_topic_partitions, settings.kafka_replication_factor,
                    topic_configs=_topic_configs(name))


async def ensure_topics(
    settings: Settings, names: Iterable[str], *, attempts: int = 30
) -> frozenset[str]:
    """Create the topics that do not exist yet, with our partition count and retention
    (a topic that exists keeps its settings: change them with Kafka's own tools). Returns
    those still missing because the user may not create them (a WARNING each).

    Retries for a while: a broker that has just opened its port may not answer yet. The
    brokers answering but not making topics (TopicsNotMade) is not retried here: the
    caller decides (a start waits, broker_start; the router's lanes are tried again).
    """
    wanted = list(dict.fromkeys(names))
    for _ in range(attempts - 1):
        try:
            return await _create_missing(settings, wanted)
        except TopicsNotMade:
            raise
        except (KafkaError, OSError):
            await asyncio.sleep(1.0)
    return await _create_missing(settings, wanted)


async def _create_missing(settings: Settings, names: list[str]) -> frozenset[str]:
    client = admin(settings, client_id="topic-admin")
    await client.start()
    try:
        # Under ACLs, only the topics this user may describe are listed.
        existing = set(await client.list_topics())
        if existing.intersection(names):
            _report_partitions(await described_partitions(client), names,
                               settings.kafka_topic_partitions)
        wanted = [new_topic(settings, name) for name in names if name not in existing]
        if wanted:
            response = await client.create_topics(wanted)
            return report_created(response.topic_errors)
        return frozenset()
    finally:
        await client.close()


async def described_partitions(admin: AIOKafkaAdminClient) -> dict[str, list[int]]:
    """Every topic the cluster describes without an error, with its partitions.

    All topics, not named ones: naming a missing topic may create it on a broker that
    creates topics on request."""
    return {topic["topic"]: sorted(p["partition"] for p in topic["partitions"])
            for topic in await admin.describe_topics() if topic["error_code"] == 0}


_REPORTED_PARTITIONS: set[str] = set()  # topics whose count was reported (once a process)


def _report_partitions(described: dict[str, list[int]], names: Iterable[str],
                       setting: int) -> None:
    """A topic made before with another partition count keeps it: say so (once a
    process), since the setting is not in force for it."""
    for name in names:
        partitions = described.get(name)
        if (partitions is not None and len(partitions) != setting
                and name not in _REPORTED_PARTITIONS):
            _REPORTED_PARTITIONS.add(name)
            logger.warning(
                "topic keeps its partition count, not KAFKA_TOPIC_PARTITIONS (Kafka keeps a"
                " topic's partitions: add partitions with Kafka's own tools, or start on an"
                " empty broker)", extra={"topic": name, "partitions": len(partitions),
                                         "kafka_topic_partitions": setting})


class TopicsNotMade(KafkaError):  # type: ignore[misc]  # aiokafka is untyped
    """The brokers answered but did not make topics asked for: each topic's error.

    An error that may pass by itself (`may_pass`: a broker not the controller yet, a
    timeout, fewer brokers registered than KAFKA_REPLICATION_FACTOR while a cluster
    starts) is waited out at a start; any other is the brokers' rules refusing our topics
    (a create-topic policy, the partition count or replication factor set)."""

    def __init__(self, refused: dict[str, type[KafkaError]]) -> None:
        self.refused = refused
        super().__init__("the brokers did not make " + "; ".join(
            f"{name} ({error.__name__})" for name, error in refused.items()))

    @property
    def may_pass(self) -> bool:
        return all(error.retriable or error is InvalidReplicationFactorError
                   for error in self.refused.values())


# A user not permitted to create topics: an operator creates them as admin (`routing
# topics`, or Kafka's own tools), so the service goes on with a WARNING.
_NOT_PERMITTED = (TopicAuthorizationFailedError, ClusterAuthorizationFailedError)


def report_created(topic_errors: Iterable[tuple[Any, ...]]) -> frozenset[str]:
    """Log what CreateTopics made; TopicsNotMade for the topics the brokers did not make
    (one another service made first is made; one the user may not create, a WARNING,
    and returned)."""
    created: list[str] = []
    refused: dict[str, type[KafkaError]] = {}
    not_permitted: list[str] = []
    for name, code, *_ in topic_errors:
        error = for_code(code) if code else None
        if error is None:
            created.append(name)
        elif error in _NOT_PERMITTED:
            logger.warning("topic not created", extra={"topic": name,
                                                       "error": error.__name__})
            not_permitted.append(name)
        elif error is not TopicAlreadyExistsError:
            refused[name] = error
    if created:
        logger.info("topics created", extra={"topics": created})
    if refused:
        raise TopicsNotMade(refused)
    return frozenset(not_permitted)


async def send(producer: AIOKafkaProducer, record: envelope.Record) -> asyncio.Future[object]:
    """Queue one record; the returned future resolves when the broker acknowledges it."""
    future: asyncio.Future[object] = await producer.send(
        record.topic, record.value, key=record.key, headers=record.headers)
    return future


async def send_all(producer: AIOKafkaProducer, records: Iterable[envelope.Record]) -> None:
    """Queue every record, then wait until the broker has acknowledged them all.

    If queueing one fails, the acknowledgements of those already queued are left to
    finish unwatched, their outcome taken (it is part of the same failure), so that
    asyncio does not log them as never retrieved."""
    acknowledgements: list[asyncio.Future[object]] = []
    try:
        for record in records:
            acknowledgements.append(await send(producer, record))
    except BaseException:
        for acknowledgement in acknowledgements:
            acknowledgement.add_done_callback(background.retrieved)
        raise
    await asyncio.gather(*acknowledgements)


@dataclass(frozen=True)
class Output:
    """One event to publish: where, under which key."""

    topic: str
    key: str
    event: envelope.Event

    def encoded(self) -> envelope.Record:
        """The record to send; envelope.Unserialisable if there can be none."""
        return envelope.encode(self.topic, self.key, self.event)


Publishable = Output | envelope.Record


def records(outputs: Sequence[Publishable]) -> list[envelope.Record]:
    """Every output written out, before any is sent: one that cannot be raises
    envelope.Unserialisable and nothing is sent."""
    return [out if isinstance(out, envelope.Record) else out.encoded() for out in outputs]


class PublishFailed(Exception):
    """The broker did not acknowledge every event in time; none can be promised."""


class Publisher:
    """Publishes events and returns only once the broker has acknowledged all of them.

    The producer starts on first use and is rebuilt after a failure, so a service that
    came up while the broker was down recovers by itself when it is back.
    """

    def __init__(self, settings: Settings, *, client_id: str) -> None:
        self._settings = settings
        self._client_id = client_id
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()
        self._stopping: set[asyncio.Task[None]] = set()

    async def publish(self, outputs: Sequence[Publishable]) -> None:
        """Raises envelope.Unserialisable (nothing sent) for an output that cannot be
        written, PublishFailed when the broker does not acknowledge in time."""
        timeout = self._settings.produce_timeout_seconds
        written = records(outputs)
        try:
            active = await asyncio.wait_for(self._started(), timeout)
            await asyncio.wait_for(send_all(active, written), timeout)
        except TimeoutError as exc:
            # The producer keeps retrying on its own and recovers when the broker is
            # back; the caller is told nothing was promised.
            raise PublishFailed("the broker did not acknowledge in time") from exc
        except (KafkaError, OSError) as exc:
            self._discard_in_background()
            raise PublishFailed(f"{type(exc).__name__}: {exc}") from exc

    @property
    def connected(self) -> bool:
        return self._producer is not None

    async def close(self) -> None:
        await self._discard()

    async def _started(self) -> AIOKafkaProducer:
        async with self._lock:
            if self._producer is None:
                candidate = self._new_producer()
                try:
                    await candidate.start()
                except BaseException:
                    await candidate.stop()
                    raise
                self._producer = candidate
            return self._producer

    def _new_producer(self) -> AIOKafkaProducer:
        return producer(self._settings, client_id=self._client_id)

    def _discard_in_background(self) -> None:
        """Drop a failed producer; a new one starts on next use. Stopping the old one
        waits for its pending records, so it must not hold up the caller."""
        stale, self._producer = self._producer, None
        if stale is not None:
            self._in_background(self._stop_quietly(stale))

    def _in_background(self, retiring: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(retiring)
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)

    async def _discard(self) -> None:
        async with self._lock:
            stale, self._producer = self._producer, None
        if stale is not None:
            await self._stop_quietly(stale)
        await asyncio.gather(*self._stopping)

    @staticmethod
    async def _stop_quietly(stale: AIOKafkaProducer) -> None:
        try:
            await stale.stop()
        except (KafkaError, OSError):
            logger.warning("producer did not stop cleanly", exc_info=True)
