"""The pipeline as `bin/run` lays it out (the router's intake apart from its stage), for
the e2e tests that need its processes: a store of 50 demo customers, a platform token,
every service ready."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from devtools import demo, ports, processes
from tests import credentials
from tests.conftest import TEST_ROUTING_TABLE


@dataclass(frozen=True)
class Running:
    services: list[processes.ServiceProcess]
    ports: dict[str, int]
    token: str  # a platform's


@contextlib.contextmanager
def running(kafka_bootstrap: str, folder: Path, *, intakes: int = 1) -> Iterator[Running]:
    """Started and ready; stopped on the way out."""
    database_url = f"sqlite+aiosqlite:///{folder / 'store.db'}"
    asyncio.run(demo.seed_if_empty(database_url, count=50))
    token = credentials.issue_token_blocking(database_url, "platform", "tests")
    service_ports = ports.free_ports_by_name(
        (*processes.SERVICES, processes.ROUTER_STAGE_INSTANCE,
         *processes.intake_port_names(intakes)))
    env = processes.service_env(bootstrap=kafka_bootstrap, database_url=database_url,
                                ports=service_ports,
                                extra={"ROUTING_TABLE_FILE": str(TEST_ROUTING_TABLE)})
    started = processes.pipeline_processes(env, service_ports, folder / "logs", split=True,
                                           intakes=intakes)
    try:
        for service in started:
            service.start()
        for service in started:
            service.wait_ready(timeout=90)
        yield Running(started, service_ports, token)
    finally:
        for service in started:
            service.stop()
