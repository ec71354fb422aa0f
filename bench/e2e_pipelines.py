"""The pipelines the end-to-end benchmark compares, started as processes on one
broker (and every process stopped on the way out)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench import baseline
from devtools import demo, ports, processes
from services.core import access, db, kafka, migrate, topics
from services.core.credentials import Credentials
from services.core.settings import PROJECT_ROOT, Settings
from services.router import priority, table_file

STARTED: list[subprocess.Popen[bytes]] = []
"""Every process this benchmark started, stopped on the way out whatever happens."""


def stop_all() -> None:
    for process in reversed(STARTED):
        with contextlib.suppress(Exception):
            ports.terminate(process, 20)
    STARTED.clear()


def spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        process = subprocess.Popen(args, env={**os.environ, **env}, cwd=PROJECT_ROOT,
                                   stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    STARTED.append(process)
    return process


@dataclass
class Running:
    """One pipeline, started: where to post, with what, and where tickets land."""

    name: str
    port: int
    token: str | None
    lanes: list[str]
    hops: list[str]  # the topics a ticket crosses before its lane, in order
    segmenter_pid: int
    pids: dict[str, int]
    stop: Callable[[], None]
    logs: list[Path]  # its processes' output
    # Each process's port serving /metrics (bench/e2e_probes.transactions); none for
    # the baselines.
    metrics_ports: dict[str, int] = field(default_factory=dict)


RETRIED_SEND = "retrying. Error"  # aiokafka's warning for a send the broker refused


# The lines of that kind the services' logging held back before one it wrote
# (services/core/library_lines.py).
_REPEATED = re.compile(r'"repeated":\s*(\d+)')


def refused_sends(logs: list[Path]) -> int:
    """Sends the broker refused and aiokafka sent again, each after its retry_backoff_ms
    (100 ms by default), as the processes' logs tell: each such line, and those of its
    kind it says were held back."""
    return sum(1 + sum(int(held) for held in _REPEATED.findall(line))
               for path in logs if path.exists()
               for line in path.read_text(errors="replace").splitlines()
               if RETRIED_SEND in line)


def start_baseline(bootstrap: str, home: Path, *, exactly_once: bool = False) -> Running:
    """The hand-written pipeline (bench/baseline.py); with `exactly_once` its stages run
    transactions, on topics of their own."""
    name = "baseline-eo" if exactly_once else "baseline"
    incoming, segmented, lane = baseline.topics(
        baseline.EXACTLY_ONCE_PREFIX if exactly_once else baseline.PREFIX)
    # The project's topic layout on one machine (`start_project`), for a like comparison.
    asyncio.run(kafka.ensure_topics(
        processes.one_machine(Settings(kafka_bootstrap_servers=bootstrap)),
        (incoming, segmented, lane)))
    port = ports.free_port()
    env = {"BASELINE_BOOTSTRAP": bootstrap, "BASELINE_TOPIC": incoming}
    intake = spawn([sys.executable, "-m", "uvicorn", "bench.baseline:app", "--host",
                    "127.0.0.1", "--port", str(port), "--no-access-log", "--log-level",
                    "warning"], env, home / "logs" / f"{name}-intake.log")
    stages = [
        spawn([sys.executable, "-m", "bench.baseline", "stage", "--bootstrap", bootstrap,
               "--source", source, "--target", target, "--group", f"{name}.{stage}",
               "--add", add, *(["--exactly-once"] if exactly_once else [])], {},
              home / "logs" / f"{name}-{stage}.log")
        for stage, source, target, add in (
            ("segmenter", incoming, segmented, "segment"),
            ("router", segmented, lane, "department"))]
    if not ports.wait_for_http(f"http://127.0.0.1:{port}/healthz", intake, timeout=60,
                               what=f"{name} intake", log_file=home / "logs"):
        raise TimeoutError(f"the {name} intake did not start")

    def stop() -> None:
        for process in (intake, *stages):
            ports.terminate(process, 20)
            STARTED.remove(process)

    return Running(name, port, None, [lane], [incoming, segmented], stages[0].pid,
                   {"intake": intake.pid, "segmenter": stages[0].pid,
                    "router-stage": stages[1].pid}, stop,
                   [home / "logs" / f"{name}-{stage}.log"
                    for stage in ("intake", "segmenter", "router")])


async def prepare_store(database_url: str, customers: int) -> str:
    await demo.seed_if_empty(database_url, count=customers)
    await migrate.upgrade(database_url)
    engine = db.engine(database_url)
    try:
        _credential, token = await Credentials(db.sessions(engine)).issue(
            access.Role.PLATFORM, "bench", label="bench/e2e.py", rate_limit="100000/second")
    finally:
        await engine.dispose()
    return token


def project_lanes() -> list[str]:
    table = table_file.load(Settings().routing_table_file)
    return [lane for department in sorted(table.departments)
            for lane in priority.lane_topics(department)]


def start_project(bootstrap: str, home: Path, customers: int, *,
                  split: bool = True, intakes: int = 1) -> Running:
    """The project as `bin/run` starts it, one partition a topic included (`split`: the
    router's intake and stage in two processes; `intakes`: intake processes serving one
    port; see devtools.processes)."""
    database_url = f"sqlite+aiosqlite:///{home / 'project.db'}"
    token = asyncio.run(prepare_store(database_url, customers))
    lanes = project_lanes()
    settings = processes.one_machine(Settings(kafka_bootstrap_servers=bootstrap))
    asyncio.run(kafka.ensure_topics(settings, [*topics.PIPELINE, *lanes]))
    service_ports = ports.free_ports_by_name(
        (*processes.SERVICES, processes.ROUTER_STAGE_INSTANCE,
         *processes.intake_port_names(intakes)))
    env = processes.service_env(bootstrap=bootstrap, database_url=database_url,
                                ports=service_ports,
                                topic_partitions=settings.kafka_topic_partitions)
    services = {service.name: service for service in processes.pipeline_processes(
        env, service_ports, home / "logs", split=split, intakes=intakes)}
    for service in services.values():
        service.start()
        assert service.process is not None
        STARTED.append(service.process)
    for service in services.values():
        service.wait_ready(timeout=120)

    def stop() -> None:
        for service in services.values():
            if service.process is not None:
                process = service.process
                service.stop()
                STARTED.remove(process)

    pids = {name: s.process.pid for name, s in services.items() if s.process is not None}
    # Split, the router process is the intake alone (its stage is `router-stage`): named
    # so, its figures stand beside the baselines' intake.
    pids = ({"intake" if name == "router" else name: pid for name, pid in pids.items()}
            if split else {"intake": pids["router"], **pids})
    return Running("project", service_ports["router"], token, lanes,
                   [topics.INCOMING, topics.SEGMENTED], pids["segmenter"], pids, stop,
                   [service.log_file for service in services.values()],
                   {name: service.port for name, service in services.items()})
