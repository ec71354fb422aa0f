"""A service or command started with a bad setting says which variable, what was wrong
and what it takes, in a few lines without a traceback, and never the value (it may be a
password): settings.from_environment."""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from devtools import processes
from services.core import settings
from services.core.settings import InvalidSettings, from_environment


def refused(monkeypatch: pytest.MonkeyPatch, **environment: str) -> list[str]:
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(InvalidSettings) as refusal:
        from_environment()
    return refusal.value.problems


def test_a_value_out_of_its_range_names_the_variable_and_the_range(
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert refused(monkeypatch, KAFKA_TOPIC_PARTITIONS="0") == [
        "KAFKA_TOPIC_PARTITIONS: Input should be greater than or equal to 1"]


def test_each_bad_variable_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    problems = refused(monkeypatch, LOG_LEVEL="loud", METRICS_PORT="70000")
    assert problems == ["METRICS_PORT: Input should be less than or equal to 65535",
                        "LOG_LEVEL: Input should be 'DEBUG', 'INFO', 'WARNING' or 'ERROR'"]


def test_a_list_that_is_not_json_says_how_to_write_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """pydantic-settings reads a list from the environment as JSON; `age` alone is not."""
    assert refused(monkeypatch, PARITY_ATTRIBUTES="age") == [
        'PARITY_ATTRIBUTES: not valid JSON; this setting is a list, written as JSON:'
        ' ["first", "second"]']


@pytest.mark.parametrize("url", ["notaurl://x", "garbage", "sqlite:///.data/routing.db",
                                 "postgresql+psycopg2://u:s3cret-pw@db/routing"])
def test_a_database_the_services_do_not_run_on_is_refused_without_its_url(
        monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    problems = refused(monkeypatch, DATABASE_URL=url)
    assert problems == ["DATABASE_URL: must start with sqlite+aiosqlite:// or"
                        " postgresql+asyncpg:// (e.g."
                        " postgresql+asyncpg://user:password@host/db)"]
    assert "s3cret-pw" not in str(problems)


@pytest.mark.parametrize(("url", "problem"), [
    ("postgresql+asyncpg://u:s3cret-pw@db/routing?sslmode=require",
     "option 'sslmode' is not one the asyncpg driver takes (libpq's sslmode is ssl here,"
     " e.g. ?ssl=require); it takes "),
    ("postgresql+asyncpg://u:s3cret-pw@db/routing?connect_timeout=5",
     "option 'connect_timeout' is not one the asyncpg driver takes (libpq's, not"
     " asyncpg's); it takes "),
    ("postgresql+asyncpg://u:s3cret-pw@db:99999/routing",
     "its port must be a number from 1 to 65535"),
    # Several hosts, not all with a port: SQLAlchemy's ArgumentError at the first
    # connection, a traceback.
    ("postgresql+asyncpg://u:s3cret-pw@/routing?host=db-a,db-b",
     "its ?host= option: All ports are required to be present for asyncpg multiple host"
     " URL (e.g. ?host=a:5432&host=b:5432)"),
    # A port out of range: asyncpg's OverflowError at the first connection, a traceback.
    ("postgresql+asyncpg://u:s3cret-pw@/routing?host=db-a:5432&host=db-b:70000",
     "its ?host= option names a server with a port that is not a number from 1 to 65535"
     " (70000)"),
    ("postgresql+asyncpg://u:s3cret-pw@/routing?host=db-a:0",
     "its ?host= option names a server with a port that is not a number from 1 to 65535"
     " (0)"),
    # A port that is no number: looked up as a host name "db:5433x", waited on forever.
    ("postgresql+asyncpg://u:s3cret-pw@/routing?host=db:5433x",
     "its ?host= option names a server with a port that is not a number from 1 to 65535"
     " ('5433x')"),
])
def test_a_postgresql_url_the_driver_would_refuse_is_refused_without_its_url(
        monkeypatch: pytest.MonkeyPatch, url: str, problem: str) -> None:
    """Not at the first connection, in a driver's traceback."""
    [found] = refused(monkeypatch, DATABASE_URL=url)
    assert found.startswith(f"DATABASE_URL: {problem}")
    assert "s3cret-pw" not in found


def test_the_postgresql_options_taken_reach_the_driver() -> None:
    """Each option the URL may carry is one asyncpg's connect() or SQLAlchemy's dialect
    takes: the list cannot name one the driver would refuse."""
    dialect_own = {"prepared_statement_cache_size", "host"}
    takes = set(inspect.signature(asyncpg.connect).parameters) | dialect_own
    assert set(settings.POSTGRESQL_OPTIONS) <= takes


@pytest.mark.parametrize("url", ["sqlite+aiosqlite:///.data/routing.db",
                                 "postgresql+asyncpg://u:p@db:5432/routing",
                                 "postgresql+asyncpg://u:p@db/routing?ssl=require",
                                 "postgresql+asyncpg://u:p@/routing?host=a:5432&host=b:5432",
                                 "postgresql+asyncpg://u:p@/routing?host=/run/postgresql",
                                 "postgresql+asyncpg://u:p@/routing?host=::1"])
def test_the_stores_we_run_on_are_taken(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.setenv("DATABASE_URL", url)
    assert from_environment().database_url == url
    assert url.split("://")[0] in settings.DATABASE_DRIVERS


def test_a_service_started_with_a_bad_setting_exits_with_the_message_alone() -> None:
    """As on a console or in a container's log: no traceback."""
    started = subprocess.run(
        [sys.executable, "-m", "services.metrics"], capture_output=True, text=True,
        timeout=60, check=False, cwd=settings.PROJECT_ROOT,
        env={"PATH": "/usr/bin:/bin", "LOG_LEVEL": "loud"})
    assert started.returncode == 1
    assert started.stderr == (
        "invalid settings (environment variables):\n"
        "  LOG_LEVEL: Input should be 'DEBUG', 'INFO', 'WARNING' or 'ERROR'\n")


def test_settings_that_disagree_are_named_as_the_rule_says(
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert refused(monkeypatch, KAFKA_SASL_PASSWORD="pw-1") == [
        "KAFKA_SASL_USERNAME / KAFKA_SASL_PASSWORD are set but KAFKA_SECURITY_PROTOCOL is"
        " PLAINTEXT: use SASL_SSL (or SASL_PLAINTEXT)"]


@pytest.mark.parametrize("url", ["sqlite+aiosqlite://", "sqlite+aiosqlite:///:memory:"])
def test_a_sqlite_store_in_memory_is_refused(monkeypatch: pytest.MonkeyPatch,
                                             url: str) -> None:
    """Each process would have a store of its own: the intake's tickets unknown to the
    router stage, credentials issued to none of them."""
    [problem] = refused(monkeypatch, DATABASE_URL=url)
    assert problem.startswith("DATABASE_URL: a SQLite store is a file, shared by the services")


def test_a_file_setting_naming_no_file_says_what_it_takes(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert refused(monkeypatch, KAFKA_SSL_CAFILE=str(tmp_path / "none.pem")) == [
        "KAFKA_SSL_CAFILE: Path does not point to a file: give the path of a file this"
        " process can read"]


class TestDatabasePassword:
    """DATABASE_PASSWORD: PostgreSQL's password in any characters, apart from the URL
    (one in the URL must be percent-encoded by hand)."""

    def test_it_reaches_the_url_whatever_its_characters(
            self, monkeypatch: pytest.MonkeyPatch) -> None:
        password = "p@ss:w/rd%41#? &="
        monkeypatch.setenv("DATABASE_URL", "postgresql+asyncpg://routing@db:5433/r?ssl=require")
        monkeypatch.setenv("DATABASE_PASSWORD", password)
        url = make_url(from_environment().database_url)
        assert (url.username, url.password, url.host, url.port, url.database, dict(url.query)
                ) == ("routing", password, "db", 5433, "r", {"ssl": "require"})

    @pytest.mark.parametrize(("url", "problem"), [
        (None, "DATABASE_PASSWORD is set, and a SQLite store takes no password: unset"
               " DATABASE_PASSWORD, or give a postgresql+asyncpg:// URL"),
        ("postgresql+asyncpg://routing:s3cret-pw@db/r",
         "it holds a password and DATABASE_PASSWORD is set too: give it once"),
    ])
    def test_one_that_would_not_be_used_is_refused(
            self, monkeypatch: pytest.MonkeyPatch, url: str | None, problem: str) -> None:
        if url is not None:
            monkeypatch.setenv("DATABASE_URL", url)
        [found] = refused(monkeypatch, DATABASE_PASSWORD="0ther-pw")
        assert found.startswith(f"DATABASE_URL: {problem}")
        assert "s3cret-pw" not in found and "0ther-pw" not in found

    def test_the_url_it_made_is_taken_again_by_the_processes_handed_it(
            self, monkeypatch: pytest.MonkeyPatch) -> None:
        """bin/run hands its services the settings' DATABASE_URL (devtools/processes.py),
        beside the DATABASE_PASSWORD they inherit: the same password twice is taken, where
        each service refused it as given twice and exited."""
        password = "p@ss:w/rd%41#? &="
        monkeypatch.setenv("DATABASE_URL", "postgresql+asyncpg://routing@db:5433/r")
        monkeypatch.setenv("DATABASE_PASSWORD", password)
        made = from_environment().database_url
        handed = processes.service_env(bootstrap="127.0.0.1:9092", database_url=made,
                                       ports={"router": 1, "segmenter": 2, "metrics": 3})
        monkeypatch.setenv("DATABASE_URL", handed["DATABASE_URL"])
        assert from_environment().database_url == made
        assert make_url(made).password == password

    def test_it_is_not_in_the_settings_repr(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """DATABASE_PASSWORD is a secret, shown as stars; the URL the settings write it
        into is not shown either (it showed the password in clear)."""
        monkeypatch.setenv("DATABASE_URL", "postgresql+asyncpg://routing@db/r")
        monkeypatch.setenv("DATABASE_PASSWORD", "s3cret-pw")
        found = from_environment()
        assert "s3cret-pw" in found.database_url
        assert "s3cret-pw" not in repr(found) and "s3cret-pw" not in str(found)

    def test_an_empty_one_is_refused(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("DATABASE_URL", "postgresql+asyncpg://routing@db/r")
        assert refused(monkeypatch, DATABASE_PASSWORD="") == [
            "DATABASE_URL: DATABASE_PASSWORD is empty: unset it, or give the password"]

    def test_a_password_with_an_at_sign_in_the_url_is_refused_without_it(
            self, monkeypatch: pytest.MonkeyPatch) -> None:
        """SQLAlchemy ends the password at its first "@": the host would be "cret@db",
        and the store's WARNINGs would name it, a piece of the password."""
        [found] = refused(monkeypatch, DATABASE_URL="postgresql+asyncpg://u:s3@cret@db/r")
        assert found == ("DATABASE_URL: its host holds an '@': a password holding '@', ':',"
                         " '/' or '%' is written percent-encoded in the URL ('@' as %40), or"
                         " given in DATABASE_PASSWORD, which takes any characters")
