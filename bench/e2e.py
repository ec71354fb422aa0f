"""End to end: the project's pipeline beside a hand-written one, same broker, same run.

    .venv/bin/python -m bench.e2e [--rates 50,200,500,1000] [--seconds 15] [--runs 1]
        [--only project|baseline] [--skip-max] [--intake-seconds 10] [--customers 2000]
        [--profile DIR]

Starts one Kafka broker (KRaft, loopback) in a temporary folder, then in turn:
- the baseline (bench/baseline.py, hand-written, at least once): uvicorn intake producing
  with acks=all and idempotence, two bare consume -> add a field -> produce -> commit
  stages, on `baseline.*` topics;
- the project's pipeline with its defaults: segmenter, router (intake) and metrics service
  as processes (`python -m services.<name>`), exactly once, a SQLite store seeded with
  `--customers` demo customers, auth on (a platform key issued in the store with the rate
  limit 100000/second), config/segments.yaml and config/routing.yaml.
Each is warmed up (40 tickets through), then measured:
- constant offered rates, open loop (requests sent at fixed times on raw keep-alive HTTP
  connections, a new connection when all are busy, whatever the server does): accepted
  (202), delivered = accepted tickets readable in a department lane by a `read_committed`
  consumer (a separate process, positioned at the lanes' end before the step) within
  `--grace` seconds after the last answer (and eventually: up to 60 s more, so that the
  next step starts without a backlog), duplicates, and latencies: end to end from the
  moment the request was written to the moment the ticket was read from the lane, and
  POST -> 202 (a request waiting for one of the 1024 connections shows as generator
  lag, not latency); tickets are matched by a unique subject;
- the highest sustainable rate: above the highest passing rate, x1.5 steps, then two
  bisections (a step passes when at least 99.5% of the requests got 202, every accepted
  ticket was delivered once within the grace and the end-to-end p99 is <= --max-p99 ms);
- intake only, closed loop: wrk (2 threads, or Python callers without wrk) on 16 and 64
  keep-alive connections for --intake-seconds, accepted requests per second;
- the segmenter's RSS (VmRSS, sampled every 0.25 s during the measurements; max).
- CPU per accepted ticket of each process and of the broker (/proc/<pid>/stat over each
  step and its drain, less the pipeline's idle rate sampled for 3 s before the step):
  robust where wall-clock figures are not, on a machine shared with other work.
Between steps it waits (at most 120 s) until no record is added to the lanes for 3 s.
Prints each figure for both and the ratio project / baseline (medians of --runs).
Everything stops by itself; every process it started is stopped on exit or Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import multiprocessing
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bench import baseline, e2e_load
from devtools import demo, ports, processes
from devtools.kafka_broker import LocalKafka
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
    segmenter_pid: int
    pids: dict[str, int]
    stop: Callable[[], None]


def start_baseline(bootstrap: str, home: Path) -> Running:
    asyncio.run(kafka.ensure_topics(Settings(kafka_bootstrap_servers=bootstrap),
                                    baseline.TOPICS))
    port = ports.free_port()
    env = {"BASELINE_BOOTSTRAP": bootstrap, "BASELINE_TOPIC": baseline.INCOMING}
    intake = spawn([sys.executable, "-m", "uvicorn", "bench.baseline:app", "--host",
                    "127.0.0.1", "--port", str(port), "--no-access-log", "--log-level",
                    "warning"], env, home / "logs" / "baseline-intake.log")
    stages = [
        spawn([sys.executable, "-m", "bench.baseline", "stage", "--bootstrap", bootstrap,
               "--source", source, "--target", target, "--group", f"baseline.{name}",
               "--add", add], {}, home / "logs" / f"baseline-{name}.log")
        for name, source, target, add in (
            ("segmenter", baseline.INCOMING, baseline.SEGMENTED, "segment"),
            ("router", baseline.SEGMENTED, baseline.LANE, "department"))]
    if not ports.wait_for_http(f"http://127.0.0.1:{port}/healthz", intake, timeout=60,
                               what="baseline intake", log_file=home / "logs"):
        raise TimeoutError("the baseline intake did not start")

    def stop() -> None:
        for process in (intake, *stages):
            ports.terminate(process, 20)
            STARTED.remove(process)

    return Running("baseline", port, None, [baseline.LANE], stages[0].pid,
                   {"intake": intake.pid, "segmenter": stages[0].pid,
                    "router": stages[1].pid}, stop)


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


def start_project(bootstrap: str, home: Path, customers: int) -> Running:
    database_url = f"sqlite+aiosqlite:///{home / 'project.db'}"
    token = asyncio.run(prepare_store(database_url, customers))
    lanes = project_lanes()
    asyncio.run(kafka.ensure_topics(Settings(kafka_bootstrap_servers=bootstrap),
                                    [*topics.PIPELINE, *lanes]))
    service_ports = {name: ports.free_port() for name in processes.SERVICES}
    env = processes.service_env(bootstrap=bootstrap, database_url=database_url,
                                ports=service_ports)
    services = {name: processes.ServiceProcess(name, service_ports[name], env,
                                               home / "logs" / f"{name}.log")
                for name in processes.SERVICES}
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
    return Running("project", service_ports["router"], token, lanes, pids["segmenter"],
                   {"intake": pids["router"], **pids}, stop)


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


IDLE_SAMPLE_SECONDS = 3.0


@dataclass
class Step:
    rate: float
    offered: int
    statuses: Counter[int]
    accepted: int
    delivered: int  # within the grace
    delivered_eventually: int  # within the grace and the drain time after it
    duplicates: int
    delivered_without_202: int
    e2e_p50_ms: float
    e2e_p99_ms: float
    post_p50_ms: float
    post_p99_ms: float
    generator_lag_p99_ms: float
    errors: Counter[str] = field(default_factory=Counter)
    # CPU milliseconds per accepted ticket, per process, over the step and its drain:
    # robust where wall-clock figures are not (a machine shared with other work).
    cpu_ms_per_ticket: dict[str, float] = field(default_factory=dict)
    passed: bool = False


@dataclass
class Bench:
    bootstrap: str
    customers: list[str]
    seconds: float
    grace: float
    max_p99_ms: float
    broker_pid: int | None = None
    drain: float = 60.0
    tag_counter: int = 0
    log: Callable[[str], None] = field(default=print)

    def tag(self, name: str) -> str:
        self.tag_counter += 1
        return f"e2e-{name}-{self.tag_counter}-{os.getpid()}"

    def measure(self, running: Running, rate: float, seconds: float) -> Step:
        """One constant offered rate, open loop; the lane reader in its own process."""
        context = multiprocessing.get_context("spawn")
        ours, theirs = context.Pipe()
        reader = context.Process(target=e2e_load.reader_process,
                                 args=(self.bootstrap, running.lanes, theirs), daemon=True)
        reader.start()
        try:
            if not ours.poll(60) or ours.recv() != "ready":
                raise RuntimeError("the lane reader did not start")
            tag = self.tag(running.name)
            rng = random.Random(self.tag_counter)
            # The pipeline's CPU when idle (its background jobs, consumers polling), over
            # IDLE_SAMPLE_SECONDS, is taken off what the step used.
            idle_before = cpu_by_process(running, self.broker_pid)
            time.sleep(IDLE_SAMPLE_SECONDS)
            cpu_before = cpu_by_process(running, self.broker_pid)
            began = time.monotonic()

            def make(n: int) -> tuple[str, bytes]:
                subject = f"{tag} {n}"
                body = e2e_load.ticket_body(rng.choice(self.customers), subject)
                return subject, e2e_load.post_request(running.port, running.token, body)

            sent = asyncio.run(e2e_load.open_loop(running.port, rate, seconds, make))
            accepted = {s.subject: s for s in sent if s.status == 202}
            last_answer = max((s.answered for s in sent), default=time.time())
            grace_deadline = last_answer + self.grace
            ours.send((list(accepted), 1.0, grace_deadline, grace_deadline + self.drain))
            if not ours.poll(self.grace + self.drain + 60):
                raise RuntimeError("the lane reader did not answer")
            seen: dict[str, list[float]] = ours.recv()
        finally:
            reader.join(5)
            if reader.is_alive():
                reader.kill()
        by_subject = {s.subject: s for s in sent}
        latencies = [(times[0] - accepted[subject].sent) * 1e3
                     for subject, times in seen.items()
                     if subject in accepted and times[0] <= grace_deadline]
        eventually = sum(1 for subject in seen if subject in accepted)
        step = Step(
            rate=rate, offered=len(sent), statuses=Counter(s.status for s in sent),
            accepted=len(accepted), delivered=len(latencies), delivered_eventually=eventually,
            duplicates=sum(len(times) - 1 for subject, times in seen.items()
                           if subject in by_subject),
            delivered_without_202=sum(1 for subject in seen
                                      if subject in by_subject and subject not in accepted),
            e2e_p50_ms=e2e_load.percentile(latencies, 0.5),
            e2e_p99_ms=e2e_load.percentile(latencies, 0.99),
            post_p50_ms=e2e_load.percentile(
                [(s.answered - s.sent) * 1e3 for s in accepted.values()], 0.5),
            post_p99_ms=e2e_load.percentile(
                [(s.answered - s.sent) * 1e3 for s in accepted.values()], 0.99),
            generator_lag_p99_ms=e2e_load.percentile(
                [(s.sent - s.scheduled) * 1e3 for s in sent], 0.99),
            errors=Counter(s.error for s in sent if s.error))
        # A stray timeout on this shared machine does not fail a step; 0.5% do.
        step.passed = (step.accepted >= 0.995 * step.offered
                       and step.delivered == step.accepted
                       and step.duplicates == 0 and step.e2e_p99_ms <= self.max_p99_ms)
        self.log(f"  {running.name} {rate:g}/s x {seconds:g}s: {describe(step)}")
        drained = asyncio.run(e2e_load.wait_quiet(self.bootstrap, running.lanes))
        if drained > 5:
            self.log(f"    (lanes quiet after {drained:.0f}s)")
        cpu_after = cpu_by_process(running, self.broker_pid)
        elapsed = time.monotonic() - began
        step.cpu_ms_per_ticket = {
            name: 1e3 * (cpu_after[name] - cpu_before[name] - elapsed / IDLE_SAMPLE_SECONDS
                         * (cpu_before[name] - idle_before[name])) / max(step.accepted, 1)
            for name in cpu_after}
        self.log("    CPU per accepted ticket (step and drain, less the idle rate), ms: "
                 + ", ".join(f"{name} {ms:.2f}" for name, ms in step.cpu_ms_per_ticket.items()))
        return step

    def warm_up(self, running: Running) -> None:
        step = self.measure(running, 20, 2)
        if step.delivered < step.accepted or step.accepted == 0:
            raise RuntimeError(f"{running.name}: warm-up tickets not delivered: {step}")

    def highest(self, running: Running, steps: list[Step]) -> float:
        """The highest rate that passes, from the steps done, x1.5 upwards, two bisections."""
        passing = [s.rate for s in steps if s.passed]
        failing = [s.rate for s in steps if not s.passed]
        low = max(passing, default=0.0)
        high = min((r for r in failing if r > low), default=math.inf)
        for _ in range(4):
            if high < math.inf:
                break
            rate = round(max(low, 100) * 1.5)
            if self.measure(running, rate, self.seconds).passed:
                low = rate
            else:
                high = rate
        for _ in range(2):
            if high == math.inf or high - low <= max(5, 0.1 * low):
                break
            rate = round((low + high) / 2)
            if self.measure(running, rate, self.seconds).passed:
                low = rate
            else:
                high = rate
        return low


def describe(step: Step) -> str:
    statuses = ", ".join(f"{k or 'none'}: {v}" for k, v in sorted(step.statuses.items()))
    if step.errors:
        statuses += f" ({', '.join(f'{k}: {v}' for k, v in step.errors.most_common())})"
    return (f"offered {step.offered}, answers {{{statuses}}}, delivered {step.delivered}"
            f"/{step.accepted} (eventually {step.delivered_eventually}), dup {step.duplicates},"
            f" no-202 delivered"
            f" {step.delivered_without_202}; e2e p50/p99 {step.e2e_p50_ms:.0f}"
            f"/{step.e2e_p99_ms:.0f} ms; POST->202 p50/p99 {step.post_p50_ms:.1f}"
            f"/{step.post_p99_ms:.1f} ms; generator lag p99 {step.generator_lag_p99_ms:.1f} ms"
            f"{'  PASS' if step.passed else '  FAIL'}")


def intake_only(bench: Bench, running: Running, connections: int, seconds: float
                ) -> e2e_load.ClosedLoopResult:
    tag = bench.tag(f"{running.name}-intake{connections}")
    if shutil.which("wrk"):
        result = e2e_load.wrk(running.port, connections, seconds, running.token,
                              bench.customers, tag)
    else:
        rng = random.Random(connections)

        def make(n: int) -> tuple[str, bytes]:
            subject = f"{tag} {n}"
            body = e2e_load.ticket_body(rng.choice(bench.customers), subject)
            return subject, e2e_load.post_request(running.port, running.token, body)

        result = asyncio.run(e2e_load.closed_loop(running.port, connections, seconds, make))
    bench.log(f"  {running.name} intake, {connections} connections ({result.tool}):"
              f" {result.accepted_per_second:,.0f} accepted/s, latency p50/p99"
              f" {result.p50_ms:.1f}/{result.p99_ms:.1f} ms, answers {dict(result.statuses)}")
    drained = asyncio.run(e2e_load.wait_quiet(bench.bootstrap, running.lanes))
    if drained > 5:
        bench.log(f"    (lanes quiet after {drained:.0f}s)")
    return result


def profile(bench: Bench, running: Running, out: Path, seconds: float) -> None:
    """py-spy (raw collapsed stacks and an SVG per service) during intake load, 16 connections."""
    spy = Path(sys.executable).with_name("py-spy")
    if not spy.exists():
        bench.log("  (py-spy not installed: no profile)")
        return
    out.mkdir(parents=True, exist_ok=True)
    recorders = []
    for name, pid in running.pids.items():
        if name == "intake" and running.name == "project":
            continue  # the router is the intake
        for fmt, suffix in (("raw", "txt"), ("flamegraph", "svg")):
            recorders.append(spawn(
                [str(spy), "record", "--pid", str(pid), "--duration", str(round(seconds)),
                 "--rate", "50", "--format", fmt, "--nonblocking",
                 "--output", str(out / f"{running.name}-{name}.{suffix}")],
                {}, out / "py-spy.log"))
    time.sleep(1.0)
    intake_only(bench, running, 16, seconds)
    for recorder in recorders:
        with contextlib.suppress(subprocess.TimeoutExpired):
            recorder.wait(30)
        ports.terminate(recorder, 5)
        STARTED.remove(recorder)
    for path in sorted(out.glob(f"{running.name}-*.txt")):
        bench.log(f"  {path.name}: top frames by own samples")
        for line in top_frames(path):
            bench.log(f"    {line}")


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


Figures = dict[str, float]


def run_pipeline(bench: Bench, running: Running, rates: list[float], skip_max: bool,
                 intake_seconds: float) -> Figures:
    figures: Figures = {}
    rss = RssSampler(running.segmenter_pid)
    bench.warm_up(running)
    with rss.sampling():
        steps = []
        for rate in rates:
            step = bench.measure(running, rate, bench.seconds)
            steps.append(step)
            key = f"{rate:g}/s"
            figures[f"{key}: accepted (202) of offered, %"] = 100 * step.accepted / step.offered
            figures[f"{key}: delivered within the grace, % of accepted"] = (
                100 * step.delivered / step.accepted if step.accepted else math.nan)
            figures[f"{key}: delivered eventually, % of accepted"] = (
                100 * step.delivered_eventually / step.accepted if step.accepted else math.nan)
            figures[f"{key}: duplicates"] = step.duplicates
            figures[f"{key}: sent -> readable p50, ms"] = step.e2e_p50_ms
            figures[f"{key}: sent -> readable p99, ms"] = step.e2e_p99_ms
            figures[f"{key}: POST -> 202 p50, ms"] = step.post_p50_ms
            figures[f"{key}: POST -> 202 p99, ms"] = step.post_p99_ms
            for name, ms in step.cpu_ms_per_ticket.items():
                figures[f"{key}: CPU per ticket, {name}, ms"] = ms
        if not skip_max:
            figures["highest sustainable rate, tickets/s"] = bench.highest(running, steps)
        for connections in (16, 64):
            result = intake_only(bench, running, connections, intake_seconds)
            figures[f"intake only, {connections} connections, accepted/s"] = (
                result.accepted_per_second)
    figures["segmenter max RSS during load, MB"] = rss.max_kib / 1024
    return figures


def print_table(results: dict[str, list[Figures]], runs: int) -> None:
    names: list[str] = []
    for per_run in results.values():
        for figures in per_run:
            names.extend(name for name in figures if name not in names)

    def median(pipeline: str, name: str) -> float:
        values = [f[name] for f in results.get(pipeline, []) if name in f]
        return statistics.median(values) if values else math.nan

    width = max(len(n) for n in names) if names else 10
    print()
    print(f"{'figure (median of ' + str(runs) + ' run' + ('s' if runs > 1 else '') + ')':<{width}}"
          f" {'project':>10} {'baseline':>10} {'ratio':>7}")
    for name in names:
        project, base = median("project", name), median("baseline", name)
        ratio = project / base if base and not math.isnan(base) else math.nan
        print(f"{name:<{width}} {fmt(project):>10} {fmt(base):>10} {fmt(ratio, 2):>7}")


def fmt(value: float, digits: int = 0) -> str:
    if math.isnan(value):
        return "-"
    if digits:
        return f"{value:.{digits}f}"
    if value == int(value):
        return f"{value:,.0f}"
    return f"{value:,.1f}" if abs(value) < 10 else f"{value:,.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="50,200,500,1000",
                        help="offered rates, tickets/s, comma-separated")
    parser.add_argument("--seconds", type=float, default=15.0, help="each rate's duration")
    parser.add_argument("--intake-seconds", type=float, default=10.0)
    parser.add_argument("--grace", type=float, default=10.0,
                        help="how long after the last answer accepted tickets may arrive")
    parser.add_argument("--max-p99", type=float, default=1000.0,
                        help="end-to-end p99 (ms) a sustainable rate must keep")
    parser.add_argument("--only", choices=["project", "baseline"])
    parser.add_argument("--skip-max", action="store_true")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--customers", type=int, default=2000,
                        help="demo customers in the project's store")
    parser.add_argument("--profile", type=Path,
                        help="also run py-spy on each project service during extra intake"
                             " load (16 connections) and write its profiles here")
    parser.add_argument("--keep", type=Path, help="keep the broker, store and logs here")
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",") if r]

    def interrupted(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    home = args.keep or Path(tempfile.mkdtemp(prefix="bench-e2e-"))
    began = time.monotonic()
    broker = LocalKafka(home / "kafka", heap="768m")
    results: dict[str, list[Figures]] = {}
    try:
        broker.start()
        customers = [g.customer["customer_id"] for g in demo.generate(min(args.customers,
                                                                          20_000))]
        bench = Bench(broker.bootstrap_servers, customers, args.seconds, args.grace,
                      args.max_p99, broker_pid=broker.pid,
                      log=lambda line: print(line, flush=True))
        pipelines = [args.only] if args.only else ["baseline", "project"]
        for run in range(args.runs):
            for name in pipelines if run % 2 == 0 else reversed(pipelines):
                print(f"run {run + 1}/{args.runs}: {name} (started at"
                      f" {time.monotonic() - began:.0f}s)", flush=True)
                running = (start_baseline(broker.bootstrap_servers, home) if name == "baseline"
                           else start_project(broker.bootstrap_servers, home, args.customers))
                try:
                    results.setdefault(name, []).append(
                        run_pipeline(bench, running, rates, args.skip_max,
                                     args.intake_seconds))
                    if args.profile and run == 0:
                        profile(bench, running, args.profile, args.intake_seconds)
                finally:
                    running.stop()
        print_table(results, args.runs)
        print(f"\n{time.monotonic() - began:.0f}s in all; broker, store and logs in {home}"
              if args.keep else f"\n{time.monotonic() - began:.0f}s in all")
    except KeyboardInterrupt:
        print("interrupted; stopping", file=sys.stderr)
        if results:
            print_table(results, args.runs)
        raise SystemExit(130) from None
    finally:
        stop_all()
        broker.stop()
        if args.keep is None:
            shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
