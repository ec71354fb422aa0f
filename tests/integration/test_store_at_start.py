"""A service started while its PostgreSQL is down waits for it, then starts; a mistake
in DATABASE_URL ends the start at once, exit 1, naming DATABASE_URL; a command fails at
once in one line (services/core/store_start.py). The metrics service stands for the
three: they start through the same door (tests/service_starts.py)."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from devtools import ports, processes
from devtools.postgres import LocalPostgres
from services.core.settings import PROJECT_ROOT
from tests.databases import ExternalPostgres
from tests.service_starts import exit_code_within, logged_within, metrics_service

# Bounds on waits that end far sooner unless the start is broken.
WAITING_SECONDS = 30.0
READY_SECONDS = 120.0
WAITING = "is unreachable: waiting for it"


@pytest.fixture
def stopped_postgres(tmp_path: Path) -> Iterator[LocalPostgres]:
    """A PostgreSQL on a free port, stopped: its cluster and database made by a first
    start and stop, as a server that went down has them. (Started for the first time
    under the test, it would listen a moment before its database exists, and a service
    trying then is told `database ... does not exist`: a mistake in DATABASE_URL, exit 1.)"""
    server = LocalPostgres(tmp_path / "postgres")
    try:
        server.start()
        server.stop()
        yield server
    finally:
        server.remove()


class TestAServiceWhileTheStoreIsDown:
    def test_it_waits_for_postgresql_then_starts(
            self, tmp_path: Path, kafka_bootstrap: str, stopped_postgres: LocalPostgres,
            started_services: list[processes.ServiceProcess]) -> None:
        service = metrics_service(tmp_path, bootstrap=kafka_bootstrap,
                                  database_url=stopped_postgres.url)
        service.start()
        started_services.append(service)
        assert logged_within(service, WAITING, WAITING_SECONDS), service.log_file.read_text()
        assert logged_within(service, "next try in 2 s", WAITING_SECONDS)  # tried again
        assert service.process is not None and service.process.poll() is None
        logs = service.log_file.read_text()
        assert f"the store (DATABASE_URL) at 127.0.0.1:{stopped_postgres.port} {WAITING}" \
            in logs
        assert stopped_postgres.password not in logs
        assert "Traceback" not in logs

        stopped_postgres.start()
        service.wait_ready(READY_SECONDS)  # migrated, then started as usual
        assert "Traceback" not in service.log_file.read_text()


    @pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
    def test_a_stop_signal_ends_the_wait_as_it_stops_a_service(
            self, tmp_path: Path, started_services: list[processes.ServiceProcess],
            stop: signal.Signals) -> None:
        port = ports.free_port()
        service = metrics_service(tmp_path, bootstrap="127.0.0.1:1", database_url=(
            f"postgresql+asyncpg://routing:pw@127.0.0.1:{port}/routing"))
        service.start()
        started_services.append(service)
        assert logged_within(service, WAITING, WAITING_SECONDS), service.log_file.read_text()
        service.signal(stop)
        assert exit_code_within(service, WAITING_SECONDS) == 0
        assert "Traceback" not in service.log_file.read_text()


class TestAMistakeInDatabaseUrl:
    @pytest.mark.parametrize(("change", "said"), [
        ({"password": "not-the-password"}, "password authentication failed"),
        ({"database": "no_such_database"}, 'database "no_such_database" does not exist'),
    ])
    def test_the_service_exits_1_at_once_naming_it(
            self, tmp_path: Path, postgres_server: LocalPostgres | ExternalPostgres,
            started_services: list[processes.ServiceProcess], change: dict[str, str],
            said: str) -> None:
        url = make_url(postgres_server.url).set(**change)
        # No broker: the start ends before it would reach one.
        service = metrics_service(tmp_path, bootstrap="127.0.0.1:1",
                                  database_url=url.render_as_string(hide_password=False))
        service.start()
        started_services.append(service)
        assert exit_code_within(service, WAITING_SECONDS) == 1
        logs = service.log_file.read_text()
        assert f"DATABASE_URL: the store at {url.host}:{url.port} cannot be used:" in logs
        assert said in logs
        assert WAITING not in logs and "Traceback" not in logs
        assert str(url.password) not in logs


class TestACommand:
    def test_it_fails_at_once_in_one_line_while_the_store_is_down(self) -> None:
        port = ports.free_port()
        password = "s3cret-Pa55"
        done = subprocess.run(
            [sys.executable, "-c", "from services.cli import app; app()", "credentials",
             "list"], cwd=PROJECT_ROOT, capture_output=True, text=True,
            timeout=WAITING_SECONDS, check=False,
            env={"PATH": "/usr/bin:/bin",
                 "DATABASE_URL": f"postgresql+asyncpg://routing:{password}@127.0.0.1:{port}/r"})
        assert done.returncode == 1
        assert done.stdout == ""
        [line] = done.stderr.splitlines()
        assert line.startswith(f"DATABASE_URL: the store at 127.0.0.1:{port} is unreachable:")
        assert password not in line


class TestADatabasePasswordOfAnyCharacters:
    def test_a_command_opens_the_store_with_it(self, tmp_path: Path) -> None:
        """DATABASE_PASSWORD, apart from the URL: a password a secret store made, with
        characters a URL holds only percent-encoded, opens a real PostgreSQL's store
        (password authentication, SCRAM)."""
        password = "p@ss:w/rd%41#? &="
        server = LocalPostgres(tmp_path / "postgres", password=password)
        try:
            server.start()
            done = subprocess.run(
                [sys.executable, "-c", "from services.cli import app; app()", "credentials",
                 "list"], cwd=PROJECT_ROOT, capture_output=True, text=True,
                timeout=READY_SECONDS, check=False,
                env={"PATH": "/usr/bin:/bin", "DATABASE_PASSWORD": password,
                     "DATABASE_URL": f"postgresql+asyncpg://{server.user}@127.0.0.1:"
                                     f"{server.port}/{server.database}"})
        finally:
            server.remove()
        assert (done.returncode, done.stderr) == (0, "")
        assert password not in done.stdout
