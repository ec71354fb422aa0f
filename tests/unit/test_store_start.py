"""The store at a start (services/core/store_start.py): which failures are the store's
outage, waited out, and which are mistakes in DATABASE_URL that no wait mends; what the
lines about it say (where the store is, never the password). Waiting on a real
PostgreSQL: tests/integration/test_store_at_start.py."""

from __future__ import annotations

import logging
import socket
import sqlite3
import ssl
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.exc import DBAPIError, OperationalError

from services.core import at_start, db, store_start
from tests.unit.test_outage import as_sqlalchemy_raises

OUTAGE, MISTAKE, OTHER = (at_start.Failure.OUTAGE, at_start.Failure.MISTAKE,
                          at_start.Failure.OTHER)
PASSWORD = "s3cret-Pa55"
POSTGRES_URL = f"postgresql+asyncpg://routing:{PASSWORD}@db.internal:6543/routing"


class TestWhatIsWaitedOutAndWhatIsAMistake:
    @pytest.mark.parametrize("driver_error", [
        asyncpg.exceptions.CannotConnectNowError("the database system is starting up"),
        asyncpg.exceptions.TooManyConnectionsError("sorry, too many clients already"),
        asyncpg.exceptions.AdminShutdownError("terminating connection due to"
                                              " administrator command"),
    ])
    def test_postgresql_not_ready_yet_is_waited_out(self, driver_error: Exception) -> None:
        error = as_sqlalchemy_raises(driver_error)
        assert store_start.failure(error, backend="postgresql") is OUTAGE

    @pytest.mark.parametrize("error", [
        ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 5432)"),
        socket.gaierror(-2, "Name or service not known"),  # its DNS name not there yet
        TimeoutError(),  # no answer within db.CONNECT_SECONDS
        OperationalError("connect", {}, Exception("server closed the connection")),
    ])
    def test_postgresql_unreachable_is_waited_out(self, error: Exception) -> None:
        assert store_start.failure(error, backend="postgresql") is OUTAGE

    @pytest.mark.parametrize("driver_error", [
        asyncpg.exceptions.InvalidPasswordError(
            'password authentication failed for user "routing"'),
        asyncpg.exceptions.InvalidAuthorizationSpecificationError(
            'no pg_hba.conf entry for host "10.0.0.7", user "routing"'),
        asyncpg.exceptions.InvalidCatalogNameError('database "routnig" does not exist'),
        asyncpg.exceptions.InsufficientPrivilegeError("permission denied for schema public"),
    ])
    def test_a_mistake_in_database_url_is_not_waited_on(self, driver_error: Exception) -> None:
        error = as_sqlalchemy_raises(driver_error)
        assert store_start.failure(error, backend="postgresql") is MISTAKE
        assert isinstance(error, db.STORE_ERRORS)  # met where the start meets the store

    @pytest.mark.parametrize("driver_error", [
        ssl.SSLCertVerificationError(1, "certificate verify failed: self-signed certificate"),
        asyncpg.exceptions.ClientConfigurationError('invalid sslmode "verify-fully"'),
    ])
    def test_a_client_side_mistake_is_not_waited_on(self, driver_error: Exception) -> None:
        for error in (driver_error, as_sqlalchemy_raises(driver_error)):
            assert store_start.failure(error, backend="postgresql") is MISTAKE

    def test_a_sqlite_file_that_cannot_be_opened_is_a_mistake(self, tmp_path: Path) -> None:
        with pytest.raises(sqlite3.OperationalError) as raised:
            sqlite3.connect(tmp_path / "no-such-folder" / "store.db")
        error = DBAPIError.instance("connect", {}, raised.value, sqlite3.Error)
        assert db.is_outage(error) is True  # once running, the stages would wait it out
        assert store_start.failure(error, backend="sqlite") is MISTAKE

    @pytest.mark.parametrize("error", [PermissionError(13, "Permission denied"),
                                       NotADirectoryError(20, "Not a directory")])
    def test_a_sqlite_folder_that_cannot_be_made_is_a_mistake(self, error: OSError) -> None:
        assert store_start.failure(error, backend="sqlite") is MISTAKE

    def test_a_sqlite_file_another_process_holds_locked_is_waited_out(
            self, tmp_path: Path) -> None:
        holder = sqlite3.connect(tmp_path / "store.db", isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        try:
            waiting = sqlite3.connect(tmp_path / "store.db", timeout=0)
            with pytest.raises(sqlite3.OperationalError) as raised:
                waiting.execute("SELECT * FROM sqlite_master")
            waiting.close()
        finally:
            holder.close()
        error = DBAPIError.instance("SELECT", {}, raised.value, sqlite3.Error)
        assert store_start.failure(error, backend="sqlite") is OUTAGE

    @pytest.mark.parametrize("driver_error", [
        asyncpg.exceptions.UndefinedTableError('relation "alembic_version" does not exist'),
        asyncpg.exceptions.UniqueViolationError("duplicate key value"),
    ])
    def test_a_failing_migration_is_neither(self, driver_error: Exception) -> None:
        error = as_sqlalchemy_raises(driver_error)
        assert store_start.failure(error, backend="postgresql") is OTHER

    def test_a_failing_migration_on_sqlite_is_neither(self) -> None:
        connection = sqlite3.connect(":memory:")
        with pytest.raises(sqlite3.OperationalError) as raised:
            connection.execute("SELECT * FROM no_such_table")
        error = DBAPIError.instance("SELECT", {}, raised.value, sqlite3.Error)
        assert store_start.failure(error, backend="sqlite") is OTHER


class TestWhatTheLinesSay:
    def test_where_names_host_and_port_only(self) -> None:
        assert store_start.where(POSTGRES_URL) == "db.internal:6543"
        assert store_start.where("postgresql+asyncpg://routing@db/routing") == "db:5432"
        assert store_start.where("sqlite+aiosqlite:////var/lib/routing/routing.db") == \
            "/var/lib/routing/routing.db"

    def test_where_names_each_server_the_driver_is_given(self) -> None:
        """The URL's ?host= (a unix socket, several servers) as asyncpg is given it, not
        the URL's empty host read as localhost:5432."""
        assert store_start.where("postgresql+asyncpg://routing:pw@/routing"
                                 "?host=/run/postgresql") == "/run/postgresql/.s.PGSQL.5432"
        assert store_start.where("postgresql+asyncpg://routing:pw@:6000/routing"
                                 "?host=/run/postgresql/") == "/run/postgresql/.s.PGSQL.6000"
        assert store_start.where("postgresql+asyncpg://routing:pw@/routing"
                                 "?host=db-a:5432&host=db-b:5433") == "db-a:5432, db-b:5433"
        assert store_start.where("postgresql+asyncpg://routing:pw@/routing?host=db-a:6543"
                                 ) == "db-a:6543"
        assert store_start.where("postgresql+asyncpg://routing:pw@/routing?host=::1"
                                 ) == "[::1]:5432"

    def test_the_problem_is_the_drivers_words_in_one_line_without_the_password(
            self) -> None:
        error = as_sqlalchemy_raises(asyncpg.exceptions.InvalidPasswordError(
            f'password authentication failed for user "routing"\n(tried {PASSWORD})'))
        said = store_start.problem(error, POSTGRES_URL)
        assert said == "(the driver's words hold the password: not shown)"

    def test_a_short_password_is_not_shown_by_what_is_left_around_it(self) -> None:
        """Blotting a password "e" out of the words would spell them: nothing is shown."""
        refused = ConnectionRefusedError(111, "Connect call failed ('10.0.0.1', 5432)")
        for password, shown in (("e", False), ("5432", False), ("long-enough-pw", True)):
            url = f"postgresql+asyncpg://routing:{password}@db/routing"
            said = store_start.problem(refused, url)
            assert (said == "ConnectionRefusedError: [Errno 111] Connect call failed"
                    " ('10.0.0.1', 5432)") is shown
            assert "***" not in said

    def test_a_refusal_names_database_url_and_what_was_wrong(self) -> None:
        error = as_sqlalchemy_raises(
            asyncpg.exceptions.InvalidCatalogNameError('database "routnig" does not exist'))
        line = store_start.refusal(error, POSTGRES_URL)
        assert line.startswith("DATABASE_URL: the store at db.internal:6543 cannot be used:")
        assert 'database "routnig" does not exist' in line
        assert PASSWORD not in line and "\n" not in line


class TestAServicesStart:
    def test_a_mistake_exits_1_at_once_with_the_line_logged(
            self, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
        (tmp_path / "a-file").write_text("")
        url = f"sqlite+aiosqlite:///{tmp_path / 'a-file' / 'store.db'}"
        waits: list[float] = []
        with caplog.at_level(logging.WARNING, logger=store_start.__name__), \
                pytest.raises(SystemExit) as exited:
            store_start.migrated_blocking(url, sleep=waits.append)
        assert exited.value.code == 1
        assert waits == []
        [logged] = caplog.records
        assert logged.levelno == logging.ERROR
        assert logged.getMessage().startswith(
            f"DATABASE_URL: the store at {tmp_path / 'a-file' / 'store.db'} cannot be used:")


class TestACommand:
    async def test_any_failure_ends_it_at_once_in_one_line(self, tmp_path: Path) -> None:
        (tmp_path / "a-file").write_text("")
        url = f"sqlite+aiosqlite:///{tmp_path / 'a-file' / 'store.db'}"
        with pytest.raises(store_start.StoreUnusable) as ended:
            await store_start.migrated(url)
        assert ended.value.code == ended.value.line  # printed by Python, exit status 1
        assert ended.value.line.startswith("DATABASE_URL: the store at ")
        assert "\n" not in ended.value.line
