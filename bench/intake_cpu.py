"""The intake alone, closed loop: requests/s and CPU per accepted request of the intake's
process, the project's beside the baseline's, same broker, same run.

    .venv/bin/python -m bench.intake_cpu [--seconds 5] [--connections 16] [--runs 1]
        [--only project|baseline] [--profile DIR] [--broker-warmup-seconds 150]
        [--pipeline-warmup-seconds 90]

Starts one Kafka broker (KRaft, loopback), warms its JIT (bench/broker_warmup.py: until
its compiler threads settle, at most --broker-warmup-seconds; 0 skips it: a cold broker
spends about a core compiling under this load, and the first pipeline measured pays for
it), then each pipeline as bench/e2e.py does (the
project's: segmenter, router and metrics service, auth on; the baseline's: its intake
and bare stages), warms it up (2 s of load, then its load in windows of 10 s until the
broker's compiler threads settle again, at most --pipeline-warmup-seconds: the broker
compiles anew for each pipeline's requests), then runs wrk (2 threads) on
`--connections` keep-alive connections for `--seconds` and reads the intake process's
CPU time (/proc/<pid>/stat, user + system) before and after: CPU ms per accepted
request over the load alone, and over the load and the drain that follows (until no
record is added to the lanes for 3 s; the project's router stage routes them in a
process of its own, `router-stage`, as `bin/run` starts it); and the cores each process
(and the broker) used during the load. With `--profile`, a further run under py-spy (raw
collapsed stacks of each process of the pipeline, each sample rooted at its thread) and
their top frames, each thread's samples weighed by the CPU /proc says it used over the
profile, beside a table of the threads (bench/e2e_probes.top_frames): py-spy counts a
thread that waits for a core, or wakes only to wait again, as busy. Every process it
started is stopped on exit.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import broker_warmup, closed_loop, e2e_load
from bench.e2e_pipelines import STARTED, Running, spawn, start_baseline, start_project, stop_all
from bench.e2e_probes import (
    ThreadCpuWindow,
    cpu_by_process,
    cpu_seconds,
    spy_command,
    top_frames,
)
from devtools import demo, ports
from devtools.kafka_broker import LocalKafka

Figures = dict[str, float]


def load(running: Running, customers: list[str], connections: int, seconds: float,
         tag: str, bootstrap: str, broker_pid: int | None = None,
         paused: tuple[str, ...] = ()) -> Figures:
    pid = running.pids["intake"]
    for name in paused:  # a diagnosis: the intake without what follows it
        os.kill(running.pids[name], signal.SIGSTOP)
    before = cpu_seconds(pid)
    others = cpu_by_process(running, broker_pid)
    began, children = time.monotonic(), _children_cpu()
    result = closed_loop.wrk(running.port, connections, seconds, running.token, customers,
                             tag)
    elapsed = time.monotonic() - began
    wrk_cores = (_children_cpu() - children) / elapsed
    during = cpu_seconds(pid) - before
    others_after = cpu_by_process(running, broker_pid)
    for name in paused:
        os.kill(running.pids[name], signal.SIGCONT)
    asyncio.run(e2e_load.wait_quiet(bootstrap, running.lanes))
    drained = cpu_seconds(pid) - before
    accepted = max(1.0, result.accepted_per_second * seconds)
    return {"accepted/s": result.accepted_per_second, "p50 ms": result.p50_ms,
            "p99 ms": result.p99_ms, "CPU ms per request, load": 1e3 * during / accepted,
            "CPU ms per request, load + drain": 1e3 * drained / accepted,
            "non-2xx": float(result.statuses.get(-1, 0)),
            **{f"cores, {name}": (others_after[name] - others[name]) / elapsed
               for name in others}, "cores, wrk": wrk_cores}


WARM_WINDOW_SECONDS = 10.0


def warm_up(running: Running, customers: list[str], connections: int, bootstrap: str,
            broker_pid: int | None, max_seconds: float) -> None:
    """2 s of load; then the pipeline's own load in windows of WARM_WINDOW_SECONDS until
    the broker's JIT settles again (broker_warmup.until_settled), at most `max_seconds`."""
    load(running, customers, connections, 2.0, f"{running.name}-warm", bootstrap)
    if broker_pid is None or max_seconds <= 0:
        return
    windows = itertools.count()
    warmed = broker_warmup.until_settled(broker_pid, max_seconds, lambda: closed_loop.wrk(
        running.port, connections, WARM_WINDOW_SECONDS, running.token, customers,
        f"{running.name}-warm-{next(windows)}"))
    asyncio.run(e2e_load.wait_quiet(bootstrap, running.lanes))
    print(f"{running.name} warmed under its load for {warmed.seconds:.0f}s: the broker's"
          f" JIT compiler threads at {warmed.compiler_cores:.3f} cores over the last"
          f" {WARM_WINDOW_SECONDS:g} s" + ("" if warmed.settled else " (not settled: time limit)"),
          flush=True)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def profiled(running: Running, customers: list[str], connections: int, seconds: float,
             out: Path, bootstrap: str, paused: tuple[str, ...], blocking: bool = False
             ) -> None:
    spy = Path(sys.executable).with_name("py-spy")
    if not spy.exists():
        print("  (py-spy not installed: no profile; `bin/setup` installs it)",
              flush=True)
        return
    out.mkdir(parents=True, exist_ok=True)
    # Every process of the pipeline at once, each its own profile: where a ticket's CPU
    # goes is spread over them. Each thread's CPU over the same window weighs its samples.
    raws = {name: out / f"{running.name}-{name}.txt" for name in running.pids}
    recorders = [spawn(spy_command(spy, pid, seconds + 1, 100, "raw", raws[name], blocking),
                       {}, out / f"py-spy-{name}.log")
                 for name, pid in running.pids.items()]
    window = ThreadCpuWindow(running.pids, seconds + 1)
    time.sleep(1.0)
    figures = load(running, customers, connections, seconds, f"{running.name}-profile",
                   bootstrap, paused=paused)
    for recorder in recorders:
        with contextlib.suppress(subprocess.TimeoutExpired):
            recorder.wait(30)
        ports.terminate(recorder, 5)
        STARTED.remove(recorder)
    cpu = window.result()
    print(f"  under py-spy ({'pausing each process' if blocking else 'nonblocking'}):"
          f" accepted/s {figures['accepted/s']:,.2f}, CPU ms per request, load"
          f" {figures['CPU ms per request, load']:.2f}", flush=True)
    for name, raw in raws.items():
        if not raw.exists():
            continue
        print(f"  {raw}: top frames by own CPU", flush=True)
        for line in top_frames(raw, 15, cpu[name]):
            print(f"    {line}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--only", choices=["project", "baseline"])
    parser.add_argument("--profile", type=Path, help="write py-spy profiles here")
    parser.add_argument("--profile-blocking", action="store_true",
                        help="py-spy pauses each process for each sample (its default; the"
                             " bench passes --nonblocking otherwise): to measure what that"
                             " costs the load")
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--pause", default="",
                        help="processes of the project to stop (SIGSTOP) during each load,"
                             " comma-separated: segmenter, metrics")
    parser.add_argument("--broker-warmup-seconds", type=float, default=150.0,
                        help="at most this long warming the new broker's JIT (0: not at all)")
    parser.add_argument("--pipeline-warmup-seconds", type=float, default=90.0,
                        help="at most this long warming each pipeline under its own load"
                             " until the broker's JIT settles again (0: 2 s of load only)")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="bench-intake-"))
    broker = LocalKafka(home / "kafka", heap="768m")
    results: dict[str, list[Figures]] = {}
    try:
        broker.start()
        bootstrap = broker.bootstrap_servers
        if args.broker_warmup_seconds > 0 and broker.pid is not None:
            warmed = asyncio.run(broker_warmup.warm(bootstrap, broker.pid,
                                                    max_seconds=args.broker_warmup_seconds))
            print(f"broker warmed for {warmed.seconds:.0f}s: its JIT compiler threads at"
                  f" {warmed.compiler_cores:.3f} cores over the last 5 s"
                  + ("" if warmed.settled else " (not settled: time limit)"), flush=True)
        paused = tuple(p for p in args.pause.split(",") if p)
        customers = [g.customer["customer_id"] for g in demo.generate(args.customers)]
        for name in [args.only] if args.only else ["baseline", "project"]:
            running = (start_baseline(bootstrap, home) if name == "baseline"
                       else start_project(bootstrap, home, args.customers))
            try:
                warm_up(running, customers, args.connections, bootstrap, broker.pid,
                        args.pipeline_warmup_seconds)
                for run in range(args.runs):
                    figures = load(running, customers, args.connections, args.seconds,
                                   f"{name}-{run}", bootstrap, broker.pid,
                                   paused if name == "project" else ())
                    print(f"{name} run {run + 1}: " + ", ".join(
                        f"{key} {value:,.2f}" for key, value in figures.items()), flush=True)
                    results.setdefault(name, []).append(figures)
                if args.profile:
                    profiled(running, customers, args.connections, args.seconds,
                             args.profile, bootstrap, paused if name == "project" else (),
                             args.profile_blocking)
            finally:
                running.stop()
        print(f"\nmedians, {args.connections} connections, {args.seconds:g} s each:")
        for name, runs in results.items():
            print(f"  {name}: " + ", ".join(
                f"{key} {statistics.median(r[key] for r in runs):,.2f}" for key in runs[0]))
        if len(results) == 2:
            ratio = (statistics.median(r["accepted/s"] for r in results["project"])
                     / statistics.median(r["accepted/s"] for r in results["baseline"]))
            print(f"  project / baseline, accepted/s: {ratio:.2f}")
    finally:
        stop_all()
        broker.stop()
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
