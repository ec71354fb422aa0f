"""What the end-to-end benchmark reads off the processes: RSS, CPU time (each process's and
each thread's), how full their transactions are, and the frames of a py-spy profile,
weighed by the CPU each thread used."""

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


# A thread's CPU over a window: {native thread id: (its name, CPU seconds)}.
ThreadCpu = dict[int, tuple[str, float]]


def task_cpu_seconds(stat: str) -> float:
    """User + system CPU seconds of one /proc/<pid>/task/<tid>/stat line (its name, in
    parentheses, may hold spaces and parentheses: the fields are read after the last)."""
    fields = stat.rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def thread_cpu(pid: int) -> ThreadCpu:
    """Each thread of a process, its name (/proc/<pid>/task/<tid>/comm) and its CPU
    seconds so far; empty when the process is gone, a thread gone meanwhile left out."""
    threads: ThreadCpu = {}
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError, IndexError, ValueError):
                threads[int(task.name)] = ((task / "comm").read_text().strip(),
                                           task_cpu_seconds((task / "stat").read_text()))
    return threads


def cpu_between(before: ThreadCpu, after: ThreadCpu) -> ThreadCpu:
    """Each thread's CPU seconds between two readings (a thread started since from 0)."""
    return {tid: (name, seconds - before.get(tid, (name, 0.0))[1])
            for tid, (name, seconds) in after.items()}


class ThreadCpuWindow:
    """Each thread's CPU, in some processes, over the next `seconds` (a py-spy record's
    window): the second reading is taken in a timer thread, so that what the bench does
    after the window (waiting for the lanes to drain) is left out, as it is of the
    samples."""

    def __init__(self, pids: dict[str, int], seconds: float) -> None:
        self._pids = pids
        self._before = {name: thread_cpu(pid) for name, pid in pids.items()}
        self._after: dict[str, ThreadCpu] = {}
        self._timer = threading.Timer(seconds, self._read)
        self._timer.start()

    def _read(self) -> None:
        self._after = {name: thread_cpu(pid) for name, pid in self._pids.items()}

    def result(self) -> dict[str, ThreadCpu]:
        self._timer.join()
        return {name: cpu_between(self._before[name], self._after.get(name, {}))
                for name in self._pids}


def spy_command(spy: Path, pid: int, seconds: float, rate: int, fmt: str, output: Path,
                blocking: bool = False) -> list[str]:
    """py-spy record of one process, each sample rooted at its native thread id
    (`--threads`), so that top_frames can weigh each thread's samples by its CPU. Without
    pausing the process by default (`--nonblocking`): py-spy's idle test (the thread's
    state in /proc) counts a thread woken and waiting for a core as busy either way."""
    return [str(spy), "record", "--pid", str(pid), "--duration", str(round(seconds)),
            "--rate", str(rate), "--format", fmt, "--threads",
            *([] if blocking else ["--nonblocking"]), "--output", str(output)]


# Leaves py-spy's own heuristic calls idle (waiting on a selector or a condition).
_KNOWN_WAITS = ("select (selectors.py", "wait (threading.py")
_THREAD_ROOT = re.compile(r"^thread \((0x[0-9a-fA-F]+|\d+)\)(?:: (.*))?$")


def thread_of(root: str) -> tuple[int, str] | None:
    """The thread id and name of a `--threads` sample's root frame (`thread (1234):
    name`; the name "" where py-spy gave none), None for a frame that is not one."""
    found = _THREAD_ROOT.match(root)
    return None if found is None else (int(found.group(1), 0), found.group(2) or "")


def top_frames(collapsed: Path, count: int = 10, cpu: ThreadCpu | None = None) -> list[str]:
    """The frames with the most samples of their own (waiting in a selector or a
    condition left out), then the project's own functions by inclusive samples.

    With `cpu` (each thread's CPU seconds over the profile's window, cpu_between) and
    samples rooted at their threads (spy_command), each thread's samples are weighed so
    that they add up to its CPU: a thread py-spy found "active" while it waited for a
    core, or woke only to wait again, counts for the CPU it used and no more. Shares are
    then of the process's CPU, and a table of the threads comes first: each one's cores,
    and its share of the samples against its share of the CPU."""
    samples: Counter[tuple[int | None, str]] = Counter()
    names: dict[int, str] = {}
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        frames = stack.split(";")
        thread = thread_of(frames[0])
        tid = None if thread is None else thread[0]
        if thread is not None:
            frames = frames[1:]
            names[thread[0]] = thread[1] or names.get(thread[0], "")
        if not frames or frames[-1].startswith(_KNOWN_WAITS):
            continue
        samples[(tid, ";".join(frames))] += int(count_text)
    by_thread: Counter[int | None] = Counter()
    for (tid, _), n in samples.items():
        by_thread[tid] += n
    weighed = cpu is not None and None not in by_thread
    if cpu is not None and weighed:
        weight = {tid: cpu[tid][1] / n if tid is not None and tid in cpu else 0.0
                  for tid, n in by_thread.items()}
        total = sum(seconds for _, seconds in cpu.values())
        header = _thread_table({tid: (names.get(tid) or name, seconds)
                                for tid, (name, seconds) in cpu.items()}, by_thread)
    else:
        weight = dict.fromkeys(by_thread, 1.0)
        total = float(sum(by_thread.values()))
        header = [] if cpu is None else ["  (samples without thread ids: not weighed)"]
    own: dict[str, float] = {}
    inclusive: dict[str, float] = {}
    for (tid, stack), n in samples.items():
        frames = stack.split(";")
        own[frames[-1]] = own.get(frames[-1], 0.0) + n * weight[tid]
        for function in {re.sub(r":\d+\)$", ")", frame) for frame in frames
                         if "(services/" in frame or "(bench/" in frame}:
            inclusive[function] = inclusive.get(function, 0.0) + n * weight[tid]
    of = "of the process's CPU" if weighed else "of the busy samples"
    return [*header, f"  own, {of}:", *_largest(own, total, count),
            f"  ours, inclusive, {of}:", *_largest(inclusive, total, count)]


def _largest(values: dict[str, float], total: float, count: int) -> list[str]:
    ranked = sorted(values.items(), key=lambda item: -item[1])[:count]
    return [f"{100 * value / max(total, 1e-9):5.1f}%  {frame}" for frame, value in ranked]


def _thread_table(cpu: ThreadCpu, samples: Counter[int | None]) -> list[str]:
    total_cpu = sum(seconds for _, seconds in cpu.values())
    total_samples = sum(samples.values())
    rows = ["  threads (CPU from /proc/<pid>/task over the profile; samples py-spy called"
            " busy):"]
    for tid, (name, seconds) in sorted(cpu.items(), key=lambda item: -item[1][1]):
        if seconds <= 0 and not samples.get(tid):
            continue
        rows.append(f"    {tid:>8} {name[:36]:<36} CPU {seconds:6.2f} s"
                    f" ({100 * seconds / max(total_cpu, 1e-9):5.1f}%), samples"
                    f" {samples.get(tid, 0):6d}"
                    f" ({100 * samples.get(tid, 0) / max(total_samples, 1):5.1f}%)")
    return rows


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
