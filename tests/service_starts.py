"""A service started as a process (a pytest plugin of tests/conftest.py, for the
`started_services` fixture), for the tests of what its start does while the
store or the broker it needs is down or mistaken (tests/integration/test_store_at_start.py,
test_broker_at_start.py): the metrics service stands for the three, which start through
the same door (serve.service: store_start, then broker_start, then serve.run)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools import ports, processes


def metrics_service(home: Path, *, bootstrap: str, database_url: str,
                    extra: dict[str, str] | None = None) -> processes.ServiceProcess:
    service_ports = ports.free_ports_by_name(("router", "segmenter", "metrics"))
    env = processes.service_env(bootstrap=bootstrap, database_url=database_url,
                                ports=service_ports,
                                extra={"LOG_FORMAT": "text", **(extra or {})})
    return processes.ServiceProcess("metrics", service_ports["metrics"], env,
                                    home / "metrics.log")


def logged_within(service: processes.ServiceProcess, text: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if service.log_file.exists() and text in service.log_file.read_text():
            return True
        time.sleep(0.1)
    return False


def exit_code_within(service: processes.ServiceProcess, seconds: float) -> int | None:
    assert service.process is not None
    try:
        return service.process.wait(seconds)
    except subprocess.TimeoutExpired:
        return None


@pytest.fixture
def started_services() -> Iterator[list[processes.ServiceProcess]]:
    """The services a test started, each stopped at its end."""
    started: list[processes.ServiceProcess] = []
    try:
        yield started
    finally:
        for service in started:
            service.stop()
