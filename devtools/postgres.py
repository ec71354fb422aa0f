"""A throwaway PostgreSQL server on loopback, for local runs and tests.

It uses Debian's `postgresql` package (`bin/setup --test` installs it): the newest
`/usr/lib/postgresql/<version>/bin`. PostgreSQL refuses to run as root, so as root the
server and `initdb` run as the `postgres` OS user, in a cluster folder owned by it. That
folder is `<home>/cluster` when the `postgres` user can reach `home`; pytest's temporary
folders sit under a root-only `/tmp/pytest-of-root`, so there it is a private folder in the
system's temporary folder instead (`<home>/cluster` then links to it; `remove()` deletes it).

The server listens on 127.0.0.1 only (no unix socket), on a free port kept across
restarts, with durability off (`fsync=off`): data survives `stop()`/`start()` and a
`kill()`, but not a machine crash. One password user (a superuser) owns one database.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy.engine import URL

from devtools import ports

DEBIAN_ROOT = Path("/usr/lib/postgresql")
OS_USER = "postgres"


class PostgresError(RuntimeError):
    pass


def bin_dir() -> Path:
    """The newest installed PostgreSQL's binaries (`/usr/lib/postgresql/<version>/bin`)."""
    found = [path.parent for path in DEBIAN_ROOT.glob("*/bin/postgres")]
    if not found:
        raise PostgresError(f"no PostgreSQL under {DEBIAN_ROOT}; run `bin/setup --test`")
    return max(found, key=lambda path: [int(part) for part in
                                        re.findall(r"\d+", path.parent.name)] or [0])


def _as_server_user() -> dict[str, Any]:
    """subprocess arguments that drop root to the `postgres` user (nothing when not root)."""
    if os.geteuid() != 0:
        return {}
    return {"user": OS_USER, "group": OS_USER, "extra_groups": []}


class LocalPostgres:
    """One PostgreSQL server process; `start()` returns once it accepts connections."""

    def __init__(self, home: Path, *, port: int | None = None, user: str = "routing",
                 password: str | None = None, database: str = "routing") -> None:
        self.home = home
        self.port = port or ports.free_port()
        self.user = user
        self.password = password or secrets.token_hex(12)
        self.database = database
        self.bin = bin_dir()
        self._cluster: Path | None = None
        self._private = False
        self._process: subprocess.Popen[bytes] | None = None

    def url_for(self, database: str) -> str:
        """An asyncpg SQLAlchemy URL for one of this server's databases."""
        return URL.create("postgresql+asyncpg", username=self.user, password=self.password,
                          host="127.0.0.1", port=self.port, database=database,
                          ).render_as_string(hide_password=False)

    @property
    def url(self) -> str:
        return self.url_for(self.database)

    @property
    def log_file(self) -> Path:
        return self.home / "postgres.log"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def data_dir(self) -> Path:
        return self._cluster_dir() / "data"

    def _env(self) -> dict[str, str]:
        return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8",
                "TZ": "UTC", "PGPASSWORD": self.password}

    def _cluster_dir(self) -> Path:
        """The folder the server user owns; made (and chowned) on first use."""
        if self._cluster is not None:
            return self._cluster
        self.home.mkdir(parents=True, exist_ok=True)
        link = self.home / "cluster"
        if link.is_symlink() and link.resolve().is_dir():
            self._cluster, self._private = link.resolve(), True
            return self._cluster
        link.mkdir(exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(link, OS_USER, OS_USER)
            reachable = subprocess.run(["test", "-w", str(link)], check=False,
                                       **_as_server_user()).returncode == 0
            if not reachable:
                link.rmdir()
                private = Path(tempfile.mkdtemp(prefix="local-postgres-"))
                shutil.chown(private, OS_USER, OS_USER)
                link.symlink_to(private, target_is_directory=True)
                self._cluster, self._private = private, True
                return private
        self._cluster = link
        return link

    def _run(self, *command: str, as_server: bool = False) -> None:
        result = subprocess.run(command, env=self._env(), capture_output=True, text=True,
                                check=False, **(_as_server_user() if as_server else {}))
        if result.returncode != 0:
            raise PostgresError(f"{' '.join(command)} failed ({result.returncode}):"
                                f"\n{result.stdout}{result.stderr}")

    def _initdb(self) -> None:
        cluster = self._cluster_dir()
        password_file = cluster / "password"
        password_file.write_text(self.password + "\n")
        if os.geteuid() == 0:
            shutil.chown(password_file, OS_USER, OS_USER)
        try:
            self._run(str(self.bin / "initdb"), "-D", str(self.data_dir), "-U", self.user,
                      f"--pwfile={password_file}", "--auth=scram-sha-256", "--no-locale",
                      "-E", "UTF8", "--no-sync", "--no-instructions", as_server=True)
        finally:
            password_file.unlink()

    def start(self, timeout: float = 60.0) -> None:
        """Start the server (initialising the cluster and database on first start)."""
        if self._process is not None and self._process.poll() is None:
            return
        first = not (self.data_dir / "PG_VERSION").exists()
        if first:
            self._initdb()
        options = {
            "listen_addresses": "127.0.0.1", "port": str(self.port),
            "unix_socket_directories": "", "fsync": "off", "synchronous_commit": "off",
            "full_page_writes": "off", "max_connections": "200",
            "logging_collector": "off",
        }
        command = [str(self.bin / "postgres"), "-D", str(self.data_dir)]
        for name, value in options.items():
            command += ["-c", f"{name}={value}"]
        with self.log_file.open("ab") as log:
            self._process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=self._env(),
                start_new_session=True, **_as_server_user())
        self._wait_ready(timeout)
        if first:
            self._run(str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port),
                      "-U", self.user, self.database)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process is None or self._process.poll() is not None:
                self._process = None
                raise PostgresError(f"PostgreSQL exited; see {self.log_file}")
            ready = subprocess.run(
                [str(self.bin / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port),
                 "-U", self.user, "-d", "postgres"], env=self._env(), check=False)
            if ready.returncode == 0:
                return
            time.sleep(0.05)
        self.kill()
        raise PostgresError(f"PostgreSQL did not start within {timeout}s; see {self.log_file}")

    def stop(self, timeout: float = 30.0) -> None:
        """Fast shutdown: open sessions are cut, the data is kept."""
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGINT)
            try:
                self._process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                return
        self._process = None

    def kill(self) -> None:
        """SIGKILL the server and its backends, as a crash would; `start()` recovers."""
        if self._process is None:
            return
        children = _children(self._process.pid)
        self._process.kill()
        self._process.wait()
        self._process = None
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while any(_alive(child) for child in children) and time.monotonic() < deadline:
            time.sleep(0.02)

    def restart(self, timeout: float = 60.0) -> None:
        self.stop()
        self.start(timeout)

    def remove(self) -> None:
        """Stop the server and delete its cluster."""
        self.stop()
        cluster = self._cluster_dir()
        shutil.rmtree(cluster, ignore_errors=True)
        if self._private:
            (self.home / "cluster").unlink(missing_ok=True)
        self._cluster = None


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
    return text[text.rindex(")") + 2:].split()


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields is not None and fields[1] == str(pid):
                found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    fields = _stat(pid)
    return fields is not None and fields[0] != "Z"
