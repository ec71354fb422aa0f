"""Debian's Prometheus on loopback, for tests and local runs.

The configuration is generated: the jobs of `deploy/prometheus/prometheus.local.yml` with
the targets' real addresses, the project's rules (`deploy/prometheus/rules/`), and the
scrape and evaluation interval asked for. Each server gets its own folder with that
configuration, its data and its log.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from devtools import ports
from services.core.settings import PROJECT_ROOT

LOCAL_CONFIG = PROJECT_ROOT / "deploy" / "prometheus" / "prometheus.local.yml"
RULES = PROJECT_ROOT / "deploy" / "prometheus" / "rules"


class PrometheusError(RuntimeError):
    pass


def binary() -> str:
    found = shutil.which("prometheus") or shutil.which("prometheus", path="/usr/bin")
    if found is None:
        raise PrometheusError("prometheus is not installed; `bin/setup --test` installs it")
    return found


def config(targets: Mapping[str, Sequence[str]], *, interval: str = "15s") -> dict[str, Any]:
    """prometheus.local.yml with each job's targets replaced and the rules by full path."""
    document: dict[str, Any] = yaml.safe_load(LOCAL_CONFIG.read_text(encoding="utf-8"))
    jobs = {job["job_name"]: job for job in document["scrape_configs"]}
    if set(targets) != set(jobs):
        raise PrometheusError(f"targets for {sorted(targets)}; the jobs are {sorted(jobs)}")
    for name, job in jobs.items():
        job["static_configs"] = [{"targets": list(targets[name])}]
    document["global"] = {**document.get("global", {}), "scrape_interval": interval,
                          "scrape_timeout": interval, "evaluation_interval": interval}
    document["rule_files"] = [str(RULES / "*.yml")]
    return document


class LocalPrometheus:
    """One Prometheus process; `start()` returns once it is ready to answer queries."""

    def __init__(self, home: Path, targets: Mapping[str, Sequence[str]], *,
                 interval: str = "15s", port: int | None = None) -> None:
        self.home = home
        self.port = port or ports.free_port()
        self._config = config(targets, interval=interval)
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.home / "prometheus.log"

    def start(self, timeout: float = 60.0) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        config_file = self.home / "prometheus.yml"
        config_file.write_text(yaml.safe_dump(self._config, sort_keys=False), encoding="utf-8")
        with self.log_file.open("ab") as log:
            self._process = subprocess.Popen(
                [binary(), f"--config.file={config_file}",
                 f"--storage.tsdb.path={self.home / 'data'}",
                 f"--web.listen-address=127.0.0.1:{self.port}"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            if ports.wait_for_http(f"{self.url}/-/ready", self._process, timeout=timeout,
                                   what="prometheus", log_file=self.log_file, pause=0.2):
                return
        except RuntimeError as exc:
            raise PrometheusError(str(exc)) from exc
        self.stop()
        raise PrometheusError(f"prometheus not ready after {timeout}s; see {self.log_file}")

    def stop(self, timeout: float = 20.0) -> None:
        if self._process is None:
            return
        ports.terminate(self._process, timeout)
        self._process = None
