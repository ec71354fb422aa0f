"""What the end-to-end benchmark reads off the processes: RSS, CPU time, how full their
transactions are, and the frames of a py-spy profile."""

from __future__ import annotations

import contextlib
import os
import re
import threading
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from bench.e2e_pipelines import Running

# What each process's /metrics says of its transactions: the intake's requests a
# transaction, and each stage's records a share (a transaction, exactly once).
_TRANSACTION_HISTOGRAMS = {"routing_intake_transaction_requests": "intake",
                           "routing_stage_share_records": "stage"}


class RssSampler:
    """The max VmRSS of a process, sampled in a thread while `sampling()`."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.max_kib = 0
        self._stop = threading.Event()

    def _sample(self) -> None:
        while not self._stop.wait(0.25):
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        self.max_kib = max(self.max_kib, int(line.split()[1]))

    @contextlib.contextmanager
    def sampling(self) -> Iterator[None]:
        self._stop.clear()
        thread = threading.Thread(target=self._sample, daemon=True)
        thread.start()
        try:
            yield
        finally:
            self._stop.set()
            thread.join()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (/proc/<pid>/stat), 0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_by_process(running: Running, broker_pid: int | None) -> dict[str, float]:
    """CPU seconds so far of each process of the pipeline (the intake once), and the broker."""
    pids = {name: pid for name, pid in running.pids.items()
            if not (name == "intake" and pid in {p for n, p in running.pids.items()
                                                 if n != "intake"})}
    if broker_pid is not None:
        pids["broker"] = broker_pid
    return {name: cpu_seconds(pid) for name, pid in pids.items()}


def top_frames(collapsed: Path, count: int = 10) -> list[str]:
    """The frames with the most samples of their own (waiting in select left out), then
    the project's own functions by inclusive samples."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, samples = line.rpartition(" ")
        if not samples.isdigit():
            continue
        frames = stack.split(";")
        if "select (selectors.py" in frames[-1]:
            continue
        total += int(samples)
        own[frames[-1]] += int(samples)
        for function in {re.sub(r":\d+\)$", ")", frame) for frame in frames
                         if "(services/" in frame or "(bench/" in frame}:
            inclusive[function] += int(samples)
    share = [f"{100 * n / max(total, 1):5.1f}%  {frame}" for frame, n in own.most_common(count)]
    return [*share, "  ours, inclusive:",
            *(f"{100 * n / max(total, 1):5.1f}%  {frame}"
              for frame, n in inclusive.most_common(count))]


Totals = dict[tuple[str, str], float]


def transactions(running: Running) -> Totals:
    """Transactions (or shares) so far, and what they held, summed over the project's
    processes. Empty for a pipeline without such metrics (the baselines)."""
    totals: Totals = {}
    for port in running.metrics_ports.values():
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
                text = answer.read().decode()
        except OSError:
            continue  # a process gone: the others still say theirs
        for key, value in transaction_totals(text).items():
            totals[key] = totals.get(key, 0.0) + value
    return totals


def transaction_totals(metrics: str) -> Totals:
    """{(who, "count" | "sum"): value} of one process's /metrics text: `who` the intake
    or a stage's name."""
    totals: Totals = {}
    for family in text_string_to_metric_families(metrics):
        kind = _TRANSACTION_HISTOGRAMS.get(family.name)
        if kind is None:
            continue
        for sample in family.samples:
            who = "intake" if kind == "intake" else sample.labels.get("stage", "")
            for ending in ("count", "sum"):
                if sample.name == f"{family.name}_{ending}":
                    totals[(who, ending)] = totals.get((who, ending), 0.0) + sample.value
    return totals


def per_transaction(before: Totals, after: Totals) -> dict[str, float]:
    """Mean requests (intake) or records (stages) a transaction between two readings."""
    means: dict[str, float] = {}
    for who in sorted({who for who, _ in after}):
        count = after.get((who, "count"), 0.0) - before.get((who, "count"), 0.0)
        if count > 0:
            means[who] = (after.get((who, "sum"), 0.0) - before.get((who, "sum"), 0.0)) / count
    return means
