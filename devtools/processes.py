"""Starting our services as child processes, for the run command and the tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from devtools import ports
from services.core.settings import Settings

SERVICES = ("segmenter", "router", "metrics")


@dataclass
class ServiceProcess:
    name: str
    port: int
    env: dict[str, str]
    log_file: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    module: str = ""  # services.<module>; the name's when empty

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", f"services.{self.module or self.name}"],
                env={**os.environ, **self.env}, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)

    def wait_ready(self, timeout: float = 60.0) -> None:
        if ports.wait_for_http(f"{self.url}/readyz", self.process, timeout=timeout,
                               what=self.name, log_file=self.log_file):
            return
        raise TimeoutError(f"{self.name} not ready after {timeout}s; see {self.log_file}")

    def signal(self, signum: signal.Signals) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signum)

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM, then wait for the clean shutdown; SIGKILL if it does not come."""
        if self.process is None:
            return None
        code = ports.terminate(self.process, timeout)
        self.process = None
        return code

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


# On one machine the pipeline runs one instance of each stage (the SQLite store is one
# file on one host), and an instance writes each partition's share in a transaction of
# its own: partitions past the instances only add transactions, each a fixed cost (README
# "Measured": one partition a topic against three). `bin/run` and the benchmark's project
# create their topics so; a KAFKA_TOPIC_PARTITIONS of the caller's still wins, and topics
# that exist keep their count.
ONE_MACHINE_TOPIC_PARTITIONS = 1


def one_machine(settings: Settings, data_dir: Path | None = None) -> Settings:
    """`settings` for a pipeline of one instance per stage, its SQLite store in
    `data_dir` (`bin/run --data-dir`); a DATABASE_URL or a partition count of the
    caller's wins."""
    update: dict[str, object] = {}
    if "kafka_topic_partitions" not in settings.model_fields_set:
        update["kafka_topic_partitions"] = ONE_MACHINE_TOPIC_PARTITIONS
    if data_dir is not None and "database_url" not in settings.model_fields_set:
        update["database_url"] = f"sqlite+aiosqlite:///{data_dir.resolve() / 'routing.db'}"
    return settings.model_copy(update=update) if update else settings


def service_env(*, bootstrap: str, database_url: str, ports: dict[str, int],
                topic_partitions: int | None = None,
                extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment every service of one pipeline shares (`topic_partitions`: the
    count of the topics they create; None: the setting's)."""
    partitions = {} if topic_partitions is None else {
        "KAFKA_TOPIC_PARTITIONS": str(topic_partitions)}
    return {
        **partitions,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "DATABASE_URL": database_url,
        "ROUTER_PORT": str(ports["router"]),
        "SEGMENTER_PORT": str(ports["segmenter"]),
        "METRICS_PORT": str(ports["metrics"]),
        "ROUTER_URL": f"http://127.0.0.1:{ports['router']}",
        **(extra or {}),
    }


# The router instance that routes when the intake runs apart (split), and where
# `bin/run` serves it (deploy/prometheus/prometheus.local.yml scrapes it there).
ROUTER_STAGE_INSTANCE = "router-stage"
ROUTER_STAGE_PORT = 8083


def local_ports(settings: Settings) -> dict[str, int]:
    """Where `bin/run` serves each process (prometheus.local.yml's targets)."""
    return {"router": settings.router_port, "segmenter": settings.segmenter_port,
            "metrics": settings.metrics_port, ROUTER_STAGE_INSTANCE: ROUTER_STAGE_PORT}


# Further intake processes (`intakes` > 1): `intake-2`, `intake-3`... beside `router`.
INTAKE_INSTANCE = "intake"


def intake_port_names(intakes: int) -> tuple[str, ...]:
    """The ports `pipeline_processes` needs besides SERVICES' and ROUTER_STAGE_INSTANCE's
    for `intakes` intake processes: one of its own each, when they share ROUTER_PORT."""
    return tuple(f"{INTAKE_INSTANCE}-{n}" for n in range(1, intakes + 1)) if intakes > 1 else ()


def _sharing_intake(n: int, name: str, router_env: dict[str, str],
                    service_ports: dict[str, int], logs: Path) -> ServiceProcess:
    """The `n`th of the intake processes serving ROUTER_PORT together, on port `name`;
    the first keeps the name `router` and the default instance id."""
    own = service_ports[name]
    first = n == 1
    return ServiceProcess(
        "router" if first else name, own,
        {**router_env, **({} if first else {"INSTANCE_ID": str(n)}), "ROUTER_PORT": str(own),
         "INTAKE_SHARED_PORT": str(service_ports["router"])},
        logs / ("router.log" if first else f"{name}.log"), module="router")


def pipeline_processes(env: dict[str, str], service_ports: dict[str, int], logs: Path, *,
                       split: bool, intakes: int = 1) -> list[ServiceProcess]:
    """The pipeline's processes. Split: the router on ROUTER_PORT serves the intake and the
    APIs and runs no stage (ROUTER_STAGE=false); a second router instance, with its own
    instance id and port, routes (ROUTER_STAGE_INSTANCE in `service_ports`).

    `intakes` > 1 (split only): that many such intake processes serve ROUTER_PORT
    together (INTAKE_SHARED_PORT), each with an instance id and a port of its own (for its
    health and /metrics: `intake_port_names`); the first is still named `router`."""
    if intakes > 1 and not split:
        raise ValueError("several intake processes need the router split from its stage")
    router_env = {**env, "ROUTER_STAGE": "false"} if split else env
    if intakes > 1:
        intake = [_sharing_intake(n, name, router_env, service_ports, logs)
                  for n, name in enumerate(intake_port_names(intakes), start=1)]
    else:
        intake = [ServiceProcess("router", service_ports["router"], router_env,
                                 logs / "router.log")]
    processes = [
        ServiceProcess("segmenter", service_ports["segmenter"], env, logs / "segmenter.log"),
        *intake,
        ServiceProcess("metrics", service_ports["metrics"], env, logs / "metrics.log")]
    if split:
        port = service_ports[ROUTER_STAGE_INSTANCE]
        processes.append(ServiceProcess(
            ROUTER_STAGE_INSTANCE, port, {**env, "ROUTER_PORT": str(port),
                                          "INSTANCE_ID": ROUTER_STAGE_INSTANCE,
                                          "ROUTER_STAGE": "true"},
            logs / f"{ROUTER_STAGE_INSTANCE}.log", module="router"))
    return processes
