"""Settings shared by every service, read from the environment (see README)."""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path
from typing import Any, Literal, Self, get_origin

from pydantic import (
    Field,
    FilePath,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from services.core import body_bytes, durations, groups, rate_windows, request_bodies, text_forms

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_ROUTER_PORT = 8080


# A stage's transaction limit (pipeline.StageLoop): one that runs longer is abandoned, its
# producer replaced, and its records taken again. And how long SQLAlchemy's close of a
# PostgreSQL connection whose statement timed out may take (db.engine).
STAGE_TRANSACTION_SECONDS = 30.0
STORE_CLOSE_SECONDS = 2.0
# The SQL stores the services run on: SQLite through aiosqlite, PostgreSQL through asyncpg
# (db.engine gives asyncpg its timeouts).
DATABASE_DRIVERS = ("sqlite+aiosqlite", "postgresql+asyncpg")
# The options a PostgreSQL DATABASE_URL may carry (`?ssl=require`): those that reach
# asyncpg's connect() as the text a URL gives them (numbers would reach it as text).
POSTGRESQL_OPTIONS = ("ssl", "direct_tls", "target_session_attrs", "passfile", "service",
                      "servicefile", "krbsrvname", "gsslib",
                      # SQLAlchemy's: a number; several hosts (?host=a:5432&host=b:5432)
                      "prepared_statement_cache_size", "host")
POSTGRESQL_PORT = 5432  # the server's port when the URL names none
# libpq's names for them, as people copy them from other tools.
_LIBPQ_OPTIONS = {"sslmode": "ssl", "connect_timeout": None}
INSTANCE_ID = text_forms.Form(r"^[A-Za-z0-9._-]{1,64}$", "auto (the host's name) or 1 to 64"
                              " ASCII letters, digits, '.', '_' or '-'")
LOG_FORMAT = text_forms.Form("^(json|text)$", "json or text")
# A rate of requests (INTAKE_RATE_LIMIT, a credential's `rate_limit`), in the part of the
# `limits` grammar that people write: `check_rate` says these words, and a field checking
# the pattern is a schema violation rather than a refusal the schema does not tell.
RATE = text_forms.Form(
    rf"^[1-9][0-9]{{0,8}} ?(/|per) ?{rate_windows.PATTERN}$",
    "a rate such as 200/second, 6000/minute, 10 per second or 100/5 minutes, in lower case:"
    f" a number of requests from 1, then '/' or 'per', then {rate_windows.WORDS}; one rate,"
    " at most one space between its parts, none around it")


class Settings(BaseSettings):
    """One settings object for the whole system; each service reads what it needs."""

    # Inputs stay out of error messages: they may hold passwords and tokens.
    model_config = SettingsConfigDict(env_prefix="", extra="ignore", frozen=True,
                                      hide_input_in_errors=True)

    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    kafka_topic_partitions: int = Field(default=3, ge=1)
    # How long the broker may hold a consumer's fetch that finds nothing to read.
    kafka_fetch_max_wait_ms: int = Field(default=500, ge=1, le=500)
    # Followers off the tickets' way to their departments (the metrics service, the
    # router's event follower and webhook outbox) have the broker hold their fetch until
    # this much is waiting, or kafka_fetch_max_wait_ms passed: fewer, larger batches,
    # each one SQL transaction, so fewer writers queue for the store's lock. 256 KiB:
    # measured against 64 KiB and 1 MiB (README "Measured").
    kafka_follower_fetch_min_bytes: int = Field(default=262144, ge=1)
    kafka_replication_factor: int = Field(default=1, ge=1)
    delivery: Literal["exactly_once", "at_least_once"] = "exactly_once"
    instance_id: str = Field(default="0", pattern=INSTANCE_ID.pattern)
    produce_timeout_seconds: float = Field(default=5.0, gt=0)
    # Transactional producers the intake shares its callers between (group commit).
    intake_producers: int = Field(default=3, ge=1, le=16)
    # How long after the first queued ticket an intake producer waits for more to join
    # its transaction, while tickets come more often than that (0: never waits).
    intake_gather_ms: int = Field(default=5, ge=0, le=100)
    retry_after_seconds: int = Field(default=5, ge=1)

    # How every Kafka client connects (see docs/kafka-security.md).
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = (
        "PLAINTEXT")
    kafka_sasl_mechanism: Literal["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"] = "SCRAM-SHA-512"
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: FilePath | None = None
    kafka_ssl_certfile: FilePath | None = None
    kafka_ssl_keyfile: FilePath | None = None
    kafka_ssl_check_hostname: bool = True

    # PostgreSQL's password, when not in DATABASE_URL: any characters, as a secret store
    # makes them (one in the URL must be percent-encoded by hand). Before the URL, which
    # takes it in (_a_store_we_run_on).
    database_password: SecretStr | None = None
    # Not in the settings' repr: it holds the password (DATABASE_PASSWORD's too).
    database_url: str = Field(
        default=f"sqlite+aiosqlite:///{PROJECT_ROOT / '.data' / 'routing.db'}",
        validate_default=True, repr=False)
    # How long a statement waits for PostgreSQL's answer (db.engine). With the time its
    # connection's close may take, inside a stage's transaction limit, so that a store
    # that stops answering meets a stage as an outage of the store, not as a transaction
    # that overran.
    database_statement_timeout_seconds: float = Field(
        default=10.0, gt=0, lt=STAGE_TRANSACTION_SECONDS - STORE_CLOSE_SECONDS)
    segment_rules_file: Path = PROJECT_ROOT / "config" / "segments.yaml"
    routing_table_file: Path = PROJECT_ROOT / "config" / "routing.yaml"

    customer_cache_size: int = Field(default=100_000, ge=0)
    customer_cache_ttl_seconds: float = Field(default=300.0, gt=0)
    tickets_raised_flush_seconds: float = Field(default=5.0, gt=0)
    tier_recompute_interval_seconds: float = Field(default=3600.0, ge=0)
    most_valuable_share: float = Field(default=0.05, gt=0, lt=1)
    most_growable_share: float = Field(default=0.10, gt=0, lt=1)
    min_growth_ratio: float = Field(default=0.25, ge=-1, le=1)

    # Service parity across protected groups (metrics) and proxy detection (rule analysis).
    # No group smaller than this is reported: none is identifiable, none flagged on a few.
    protected_group_minimum_size: int = Field(default=30, ge=1, le=1_000_000)
    # A group served at less than this share of the best-served group's level is flagged
    # (the four-fifths rule).
    parity_threshold: float = Field(default=0.8, gt=0, lt=1)
    parity_attributes: tuple[groups.Attribute, ...] = groups.ATTRIBUTES
    parity_window: str = "7d"  # the tickets routed in this window are compared
    parity_interval_seconds: float = Field(default=300.0, gt=0)
    # Cramér's V at or above which a rule is flagged as a proxy for a protected attribute.
    proxy_association_threshold: float = Field(default=0.3, gt=0, le=1)

    store_outage_grace_seconds: float = Field(default=10.0, ge=0)
    load_sample_seconds: float = Field(default=5.0, gt=0)
    escalation_check_seconds: float = Field(default=5.0, gt=0)

    # Retention in the SQL store (days), purged once per fleet every interval.
    retention_ticket_states_days: float = Field(default=90.0, gt=0)
    retention_timelines_days: float = Field(default=400.0, gt=0)
    retention_idempotency_keys_days: float = Field(default=7.0, gt=0)
    retention_purge_interval_seconds: float = Field(default=3600.0, gt=0)
    retention_purge_chunk: int = Field(default=1000, ge=1, le=100_000)

    # Callbacks to the platforms (README, "Webhooks to the platforms").
    webhook_timeout_seconds: float = Field(default=10.0, gt=0)
    webhook_max_attempts: int = Field(default=10, ge=1, le=100)
    webhook_retry_base_seconds: float = Field(default=30.0, gt=0)
    webhook_retry_max_seconds: float = Field(default=3600.0, gt=0)
    webhook_poll_seconds: float = Field(default=1.0, gt=0)
    webhook_concurrency_per_platform: int = Field(default=4, ge=1, le=100)
    webhook_secret_overlap_seconds: float = Field(default=86400.0, ge=0)

    auth_cache_seconds: float = Field(default=5.0, ge=0)
    intake_rate_limit: str = "100/second"
    # The bytes of request bodies each such key may send (README, "Credentials").
    intake_byte_rate_limit: str = body_bytes.DEFAULT_BYTE_RATE
    # Reports over a window or the whole customer base (stats, service parity, the
    # simulator, the segment rules' analyses, the tiers' recomputation) a service computes
    # at once; more wait their turn, one per credential (services/core/report_turns.py).
    reports_at_once: int = Field(default=2, ge=1, le=32)
    # The token the command-line clients (`department`, the PNG report, `routing
    # simulate`) send.
    api_token: SecretStr | None = None

    host: str = "127.0.0.1"
    router_port: int = Field(default=DEFAULT_ROUTER_PORT, ge=1, le=65535)
    # Whether this router instance runs the router stage (it consumes tickets.segmented)
    # and the router's followers of the ticket events (tracking, webhook callbacks). Off:
    # it serves the intake and the APIs only, while another instance (another process,
    # another core) consumes: `bin/run`, docker-compose.yml and the Helm chart run them so
    # (`router` and `router-stage`).
    router_stage: bool = True
    # A second port this router instance serves, bound with SO_REUSEPORT: intake
    # processes on one host given the same one serve it together, the kernel handing each
    # new connection to one of them. Each keeps ROUTER_PORT (health, /metrics) and needs
    # an INSTANCE_ID of its own (its transactional ids).
    intake_shared_port: int | None = Field(default=None, ge=1, le=65535)
    segmenter_port: int = Field(default=8081, ge=1, le=65535)
    metrics_port: int = Field(default=8082, ge=1, le=65535)
    # Where the command-line clients find the router: by default this machine's
    # ROUTER_PORT (empty: the same).
    router_url: str = ""

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: str = Field(default="json", pattern=LOG_FORMAT.pattern)

    @field_validator("kafka_bootstrap_servers")
    @classmethod
    def _brokers_as_kafka_reads_them(cls, value: str) -> str:
        entries = value.strip().split(",")
        for number, entry in enumerate(entries, start=1):
            wrong = _broker_address_problem(entry.strip())
            if wrong:
                which = f"entry {number} of {len(entries)}" if len(entries) > 1 else "it"
                raise ValueError(f"{which} {wrong}: write host:port, separated by commas"
                                 " (e.g. kafka-1:9092,kafka-2:9092; IPv6 as [::1]:9092)")
        return value

    @field_validator("database_url")
    @classmethod
    def _a_store_we_run_on(cls, value: str, info: ValidationInfo) -> str:
        try:
            url = make_url(value)
        except ArgumentError:
            url = None
        if url is None or url.drivername not in DATABASE_DRIVERS:
            # The URL itself is not quoted: it may hold a password.
            raise ValueError("must start with " + " or ".join(
                f"{name}://" for name in DATABASE_DRIVERS)
                + " (e.g. postgresql+asyncpg://user:password@host/db)")
        if url.drivername == "postgresql+asyncpg":
            _check_postgresql_url(url)
        if url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:"):
            raise ValueError("a SQLite store is a file, shared by the services:"
                             " sqlite+aiosqlite:///path/to/routing.db (one in memory"
                             " would be each process's own)")
        password: SecretStr | None = info.data.get("database_password")
        return value if password is None else _with_password(url, password.get_secret_value())

    @field_validator("log_level", mode="before")
    @classmethod
    def _a_level_in_any_case(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("intake_rate_limit")
    @classmethod
    def _a_rate(cls, value: str) -> str:
        return check_rate(value)

    @field_validator("intake_byte_rate_limit")
    @classmethod
    def _a_byte_rate(cls, value: str) -> str:
        return body_bytes.check(value)

    @field_validator("parity_window")
    @classmethod
    def _a_window(cls, value: str) -> str:
        durations.parse_window(value)
        return value

    @field_validator("parity_attributes")
    @classmethod
    def _some_attributes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value or len(set(value)) != len(value):
            raise ValueError("name each of age_band, gender, socio_economic_band at most"
                             " once, and at least one")
        return value

    @field_validator("instance_id", mode="before")
    @classmethod
    def _instance_id_from_host(cls, value: object) -> object:
        # "auto": the host name, which differs per container (compose) and per pod.
        return socket.gethostname() if value == "auto" else value

    @model_validator(mode="before")
    @classmethod
    def _router_url_from_its_port(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("router_url"):
            data = {**data, "router_url":
                    f"http://127.0.0.1:{data.get('router_port', DEFAULT_ROUTER_PORT)}"}
        return data

    @model_validator(mode="after")
    def _kafka_security_consistent(self) -> Self:
        protocol = self.kafka_security_protocol
        sasl = protocol.startswith("SASL_")
        tls = protocol.endswith("SSL")
        if sasl and not self.kafka_sasl_username:
            raise ValueError(f"KAFKA_SASL_USERNAME is required when KAFKA_SECURITY_PROTOCOL"
                             f" is {protocol}")
        if sasl and not self.kafka_sasl_password:
            raise ValueError(f"KAFKA_SASL_PASSWORD is required when KAFKA_SECURITY_PROTOCOL"
                             f" is {protocol}")
        # Credentials or certificates that would be silently ignored are a mistake.
        if not sasl and (self.kafka_sasl_username or self.kafka_sasl_password):
            raise ValueError("KAFKA_SASL_USERNAME / KAFKA_SASL_PASSWORD are set but"
                             f" KAFKA_SECURITY_PROTOCOL is {protocol}: use SASL_SSL"
                             " (or SASL_PLAINTEXT)")
        files = {"KAFKA_SSL_CAFILE": self.kafka_ssl_cafile,
                 "KAFKA_SSL_CERTFILE": self.kafka_ssl_certfile,
                 "KAFKA_SSL_KEYFILE": self.kafka_ssl_keyfile}
        if not tls and any(files.values()):
            named = ", ".join(name for name, path in files.items() if path)
            raise ValueError(f"{named} set but KAFKA_SECURITY_PROTOCOL is {protocol}:"
                             " use SSL or SASL_SSL")
        if self.kafka_ssl_keyfile and not self.kafka_ssl_certfile:
            raise ValueError("KAFKA_SSL_KEYFILE is set without KAFKA_SSL_CERTFILE")
        return self


def _with_password(url: URL, password: str) -> str:
    """`url` holding DATABASE_PASSWORD, percent-encoded as a URL holds it, so that
    everything that opens the store reads one URL. A URL holding that same password is
    one these settings made, handed on to another process (bin/run's services inherit
    DATABASE_PASSWORD too): taken as it is; only another password is two answers."""
    if url.get_backend_name() != "postgresql":
        raise ValueError("DATABASE_PASSWORD is set, and a SQLite store takes no password:"
                         " unset DATABASE_PASSWORD, or give a postgresql+asyncpg:// URL")
    if url.password is not None and url.password != password:
        raise ValueError("it holds a password and DATABASE_PASSWORD is set too: give it"
                         " once (a URL without one: postgresql+asyncpg://user@host/db)")
    if not password:
        raise ValueError("DATABASE_PASSWORD is empty: unset it, or give the password")
    return url.set(password=password).render_as_string(hide_password=False)


def _check_postgresql_url(url: URL) -> None:
    """ValueError for a PostgreSQL URL the driver would refuse at its first connection:
    a port out of range, an option it does not take (the URL itself is not quoted)."""
    try:
        port = url.port
    except ValueError:  # not a number
        port = -1
    if port is not None and not 0 < port < 65536:
        raise ValueError("its port must be a number from 1 to 65535")
    if url.host is not None and "@" in url.host:  # the URL's first "@" ended a password
        raise ValueError("its host holds an '@': a password holding '@', ':', '/' or '%'"
                         " is written percent-encoded in the URL ('@' as %40), or given"
                         " in DATABASE_PASSWORD, which takes any characters")
    for option in url.query:
        if option in POSTGRESQL_OPTIONS:
            continue
        instead = _LIBPQ_OPTIONS.get(option)
        hint = f" (libpq's {option} is {instead} here, e.g. ?{instead}=require)" \
            if instead else " (libpq's, not asyncpg's)" if option in _LIBPQ_OPTIONS else ""
        raise ValueError(f"option {option!r} is not one the asyncpg driver takes{hint};"
                         f" it takes {', '.join(POSTGRESQL_OPTIONS)}")
    postgresql_servers(url)


def postgresql_servers(url: URL) -> tuple[str, ...]:
    """The servers a PostgreSQL URL names, as the driver will be given them: host:port,
    or a unix socket's path (`?host=/run/postgresql`); several with `?host=a:5432&host=
    b:5432`. Never the user or the password. ValueError for hosts the driver would refuse
    at its first connection, in SQLAlchemy's words, or with a port that is not a number
    (it would look that up as a host name, and wait on it as on an outage)."""
    try:
        _, given = url.get_dialect()().create_connect_args(url)
    except ArgumentError as exc:  # several hosts, not all with a port
        raise ValueError(f"its ?host= option: {exc} (e.g. ?host=a:5432&host=b:5432)"
                         ) from exc
    hosts: str | list[str] = given.get("host") or "localhost"
    ports: int | list[int] = given.get("port", POSTGRESQL_PORT)
    pairs = list(zip(hosts, ports, strict=True)) \
        if isinstance(hosts, list) and isinstance(ports, list) else [(str(hosts), ports)]
    servers = []
    for host, port in pairs:
        if not isinstance(port, int) or not 0 < port < 65536:
            raise ValueError(f"its ?host= option names a server with a port that is not a"
                             f" number from 1 to 65535 ({port!r})")
        if host.startswith("/"):
            servers.append(f"{host.rstrip('/')}/.s.PGSQL.{port}")
            continue
        if ":" in host and not _an_ipv6_address(host):
            raise ValueError(f"its ?host= option names a server with a port that is not a"
                             f" number from 1 to 65535 ({host.rpartition(':')[2]!r})")
        servers.append(f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
    return tuple(servers)


def _broker_address_problem(address: str) -> str | None:
    """What is wrong with one bootstrap server's address, as aiokafka reads it (host,
    host:port, an IPv6 address, [IPv6]:port); None if nothing."""
    if not address:
        return "is empty"
    host, port = address, ""
    if address.startswith("["):
        host, bracket, port = address[1:].partition("]")
        if not bracket or (port and not port.startswith(":")):
            return "has a [ without its ] before the port"
        port = port[1:] if port else ""
    elif ":" in address and not _an_ipv6_address(address):
        host, _, port = address.rpartition(":")
        if ":" in host:
            return "has a ':' too many (an IPv6 address goes in brackets)"
    if not host or any(character.isspace() for character in host):
        return "has no host, or one with spaces"
    a_port = port.isascii() and port.isdigit() and 1 <= int(port) <= 65535
    if (port or address.endswith(":")) and not a_port:
        return "has a port that is not a number from 1 to 65535"
    return None


def _an_ipv6_address(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def check_rate(value: str) -> str:
    """`value`, if RATE takes it (INTAKE_RATE_LIMIT and a credential's `rate_limit` alike:
    one grammar, its words in that case); else ValueError saying what is taken."""
    if RATE.fullmatch(value) is None:
        raise ValueError(RATE.words)
    return value


class InvalidSettings(SystemExit):
    """The environment's settings refused: each variable named, with what was wrong and
    what it takes (never its value: it may be a password). Exits 1, without a traceback."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid settings (environment variables):\n"
                         + "\n".join(f"  {problem}" for problem in problems))


def from_environment() -> Settings:
    """The settings, read from the environment by a service or a command at its start."""
    try:
        return Settings()
    except ValidationError as error:
        raise InvalidSettings([_problem(detail) for detail in error.errors()]) from None
    except SettingsError as error:
        # A list or other structured setting whose text is not JSON (pydantic-settings
        # names the field in its message, and nothing of the value).
        field = next((name for name in Settings.model_fields if f'"{name}"' in str(error)),
                     None)
        if field is None:
            raise InvalidSettings([str(error)]) from None
        shape = get_origin(Settings.model_fields[field].annotation)
        written = ('a list, written as JSON: ["first", "second"]'
                   if shape in (tuple, list, set, frozenset) else "written as JSON")
        raise InvalidSettings([f"{field.upper()}: not valid JSON; this setting is {written}"]
                              ) from None


def _problem(detail: Any) -> str:
    location = ".".join(str(part) for part in detail["loc"])
    message = request_bodies.message_of(detail)
    if detail["type"] == "path_not_file":
        message += ": give the path of a file this process can read"
    return f"{location.upper()}: {message}" if location else message
