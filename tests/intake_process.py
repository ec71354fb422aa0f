"""The intake (the router, a process) alone on the session's broker, with a store of its
own: the one component under test over real HTTP, no other stage running."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from devtools import ports, processes
from tests import credentials
from tests.conftest import TEST_ROUTING_TABLE


@dataclass
class Intake:
    """The router alone, on the session's broker, with a store of its own."""

    router: processes.ServiceProcess
    bootstrap: str
    database_url: str

    def url(self) -> str:
        return self.router.url

    def headers(self, role: str = "platform") -> dict[str, str]:
        subject = None if role == "admin" else "tests"
        return credentials.bearer(
            credentials.issue_token_blocking(self.database_url, role, subject))


@contextlib.contextmanager
def running(kafka_bootstrap: str, home: Path,
            database_url: str | None = None) -> Iterator[Intake]:
    """The router on `database_url` (default: a SQLite file of its own in `home`)."""
    database_url = database_url or f"sqlite+aiosqlite:///{home / 'store.db'}"
    service_ports = ports.free_ports_by_name(processes.SERVICES)
    env = processes.service_env(bootstrap=kafka_bootstrap, database_url=database_url,
                                ports=service_ports,
                                extra={"ROUTING_TABLE_FILE": str(TEST_ROUTING_TABLE)})
    router = processes.ServiceProcess("router", service_ports["router"], env,
                                      home / "router.log")
    try:
        router.start()
        router.wait_ready(timeout=90)
        yield Intake(router, kafka_bootstrap, database_url)
    finally:
        router.stop()
