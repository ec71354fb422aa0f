"""End to end: the project's pipeline beside hand-written ones, same broker, same run.

    .venv/bin/python -m bench.e2e [--rates 50,200,500,1000] [--seconds 15] [--runs 1]
        [--only project|baseline|baseline-eo] [--skip-max] [--intake-seconds 10] [--customers 2000]
        [--profile DIR [--profile-rate R]] [--one-router | --intakes N]
        [--broker-warmup-seconds 150] [--pipeline-warmup-seconds 90]

Starts one Kafka broker (KRaft, loopback) in a temporary folder, warms its JIT
(bench/broker_warmup.py: until its compiler threads settle, at most
--broker-warmup-seconds; 0 skips it), then in turn:
- the baseline (bench/baseline.py, hand-written, at least once): uvicorn intake producing
  with acks=all and idempotence, two bare consume -> add a field -> produce -> commit
  stages, on `baseline.*` topics;
- the same baseline with exactly-once stages (`baseline-eo`: read_committed, each batch
  and its offsets in one transaction), on `baseline_eo.*` topics: not a goal's
  reference, but what Kafka's transactions alone cost on this broker, next to what the
  project's exactly-once stages cost;
- the project's pipeline with its defaults: segmenter, router (intake) and metrics service
  as processes (`python -m services.<name>`) as `bin/run` starts them (the router's intake
  and its stage in two processes; `--one-router`: in one; `--intakes N`: N intake
  processes serving its port together), exactly once,
  a SQLite store seeded with `--customers` demo customers, auth on (a platform key
  issued in the store with the rate limit 100000/second), config/segments.yaml and
  config/routing.yaml.
Each is warmed up (40 tickets through, then 100 tickets/s until the broker's JIT
compiler threads settle on the pipeline's own requests, at most
--pipeline-warmup-seconds), then measured:
- constant offered rates, open loop (requests sent at fixed times on raw keep-alive HTTP
  connections, a new connection when all are busy, whatever the server does): accepted
  (202), delivered = accepted tickets readable in a department lane by a `read_committed`
  consumer (a separate process, positioned at the lanes' end before the step) within
  `--grace` seconds after the last answer (and eventually: up to 60 s more, so that the
  next step starts without a backlog), duplicates, and latencies: end to end from the
  moment the request was written to the moment the ticket was read from the lane, and
  POST -> 202 (a request waiting for one of the 1024 connections shows as generator
  lag, not latency); tickets are matched by a unique subject; the same reader notes
  when each ticket is first readable on the topics on its way (the incoming and the
  segmented topic): where its time goes, hop by hop;
- the highest sustainable rate: above the highest passing rate, x1.5 steps, then two
  bisections (a step passes when at least 99.5% of the requests got 202, every accepted
  ticket was delivered once within the grace and the end-to-end p99 is <= --max-p99 ms);
- intake only, closed loop: wrk (2 threads, or Python callers without wrk) on 16 and 64
  keep-alive connections for --intake-seconds, accepted requests per second;
- the segmenter's RSS (VmRSS, sampled every 0.25 s during the measurements; max).
- at each rate, the sends the broker refused and the producers sent again after their
  retry backoff (aiokafka's warnings in the processes' logs).
- CPU per accepted ticket of each process and of the broker (/proc/<pid>/stat over each
  step and its drain, less the pipeline's idle rate sampled for 3 s before the step):
  robust where wall-clock figures are not, on a machine shared with other work.
- the project's requests a transaction at the intake and records a share (a transaction,
  exactly once) at each stage, over the same span (means; its processes' /metrics).
Between steps it waits (at most 120 s) until no record is added to the lanes for 3 s.
Prints each figure for each pipeline, the ratio project / baseline (the goals' ratio)
and project / baseline-eo (medians of --runs).
Everything stops by itself; every process it started is stopped on exit or Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import broker_warmup, closed_loop, e2e_load
from bench.e2e_pipelines import (
    STARTED,
    Running,
    refused_sends,
    spawn,
    start_baseline,
    start_project,
    stop_all,
)
from bench.e2e_probes import RssSampler, ThreadCpuWindow, spy_command, top_frames
from bench.e2e_steps import IDLE_SAMPLE_SECONDS, Bench
from devtools import demo, ports
from devtools.kafka_broker import LocalKafka

PIPELINES = ("baseline", "baseline-eo", "project")


def intake_only(bench: Bench, running: Running, connections: int, seconds: float
                ) -> closed_loop.ClosedLoopResult:
    tag = bench.tag(f"{running.name}-intake{connections}")
    if shutil.which("wrk"):
        result = closed_loop.wrk(running.port, connections, seconds, running.token,
                              bench.customers, tag)
    else:
        rng = random.Random(connections)

        def make(n: int) -> tuple[str, bytes]:
            subject = f"{tag} {n}"
            body = e2e_load.ticket_body(rng.choice(bench.customers), subject)
            return subject, e2e_load.post_request(running.port, running.token, body)

        result = asyncio.run(closed_loop.closed_loop(running.port, connections, seconds, make))
    bench.log(f"  {running.name} intake, {connections} connections ({result.tool}):"
              f" {result.accepted_per_second:,.0f} accepted/s, latency p50/p99"
              f" {result.p50_ms:.1f}/{result.p99_ms:.1f} ms, answers {dict(result.statuses)}")
    drained = asyncio.run(e2e_load.wait_quiet(bench.bootstrap, running.lanes))
    if drained > 5:
        bench.log(f"    (lanes quiet after {drained:.0f}s)")
    return result


def profile(bench: Bench, running: Running, out: Path, seconds: float,
            rate: float = 0.0) -> None:
    """py-spy (raw collapsed stacks and an SVG per service) during intake load, 16
    connections, or with `rate`, during a step at that constant rate (after its idle
    sample, IDLE_SAMPLE_SECONDS, which the profile also covers)."""
    spy = Path(sys.executable).with_name("py-spy")
    if not spy.exists():
        bench.log("  (py-spy not installed: no profile; `bin/setup` installs it)")
        return
    out.mkdir(parents=True, exist_ok=True)
    duration = seconds + IDLE_SAMPLE_SECONDS if rate > 0 else seconds
    recorders = []
    profiled = {}
    for name, pid in running.pids.items():
        if name == "intake" and pid in {p for n, p in running.pids.items() if n != name}:
            continue  # the router (--one-router) is the intake
        profiled[name] = pid
        for fmt, suffix in (("raw", "txt"), ("flamegraph", "svg")):
            recorders.append(spawn(
                spy_command(spy, pid, duration, 50, fmt,
                            out / f"{running.name}-{name}.{suffix}"),
                {}, out / "py-spy.log"))
    window = ThreadCpuWindow(profiled, round(duration))
    time.sleep(1.0)
    if rate > 0:
        bench.measure(running, rate, seconds)
    else:
        intake_only(bench, running, 16, seconds)
    for recorder in recorders:
        with contextlib.suppress(subprocess.TimeoutExpired):
            recorder.wait(30)
        ports.terminate(recorder, 5)
        STARTED.remove(recorder)
    cpu = window.result()
    for name in profiled:
        path = out / f"{running.name}-{name}.txt"
        if not path.exists():
            continue
        bench.log(f"  {path.name}: top frames by own CPU")
        for line in top_frames(path, cpu=cpu[name]):
            bench.log(f"    {line}")


Figures = dict[str, float]


def run_pipeline(bench: Bench, running: Running, rates: list[float], skip_max: bool,
                 intake_seconds: float) -> Figures:
    figures: Figures = {}
    rss = RssSampler(running.segmenter_pid)
    bench.warm_up(running)
    refused_before = refused_sends(running.logs)
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
            for label, topic in zip(("incoming", "segmented"), running.hops, strict=True):
                figures[f"{key}: sent -> readable on the {label} topic p50, ms"] = (
                    step.readable_p50_ms[topic])
            figures[f"{key}: POST -> 202 p50, ms"] = step.post_p50_ms
            figures[f"{key}: POST -> 202 p99, ms"] = step.post_p99_ms
            refused = refused_sends(running.logs)
            figures[f"{key}: sends refused by the broker and sent again"] = (
                refused - refused_before)
            refused_before = refused
            for name, ms in step.cpu_ms_per_ticket.items():
                figures[f"{key}: CPU per ticket, {name}, ms"] = ms
            for who, mean in step.per_transaction.items():
                figures[f"{key}: requests or records a transaction, {who}"] = mean
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
          f" {'project':>10} {'baseline':>10} {'ratio':>7} {'baseline-eo':>11} {'ratio':>7}")

    def ratio(project: float, base: float) -> float:
        return project / base if base and not math.isnan(base) else math.nan

    for name in names:
        project, base = median("project", name), median("baseline", name)
        base_eo = median("baseline-eo", name)
        print(f"{name:<{width}} {fmt(project):>10} {fmt(base):>10}"
              f" {fmt(ratio(project, base), 2):>7} {fmt(base_eo):>11}"
              f" {fmt(ratio(project, base_eo), 2):>7}")


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
    parser.add_argument("--only", choices=PIPELINES)
    parser.add_argument("--skip-max", action="store_true")
    parser.add_argument("--one-router", action="store_true",
                        help="the project's router in one process, its intake and stage"
                             " together (bin/run splits them)")
    parser.add_argument("--intakes", type=int, default=1,
                        help="the project's intake processes, serving one port together")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--customers", type=int, default=2000,
                        help="demo customers in the project's store")
    parser.add_argument("--profile", type=Path,
                        help="also run py-spy on each project service during extra intake"
                             " load (16 connections) and write its profiles here")
    parser.add_argument("--profile-rate", type=float, default=0.0,
                        help="profile during a step at this constant rate (--seconds long)"
                             " instead of during intake load")
    parser.add_argument("--keep", type=Path, help="keep the broker, store and logs here")
    parser.add_argument("--broker-warmup-seconds", type=float, default=150.0,
                        help="at most this long warming the new broker's JIT (0: not at all)")
    parser.add_argument("--pipeline-warmup-seconds", type=float, default=90.0,
                        help="at most this long warming the broker's JIT again on each"
                             " pipeline's own requests before it is measured (0: not at all)")
    args = parser.parse_args()
    if args.one_router and args.intakes > 1:
        parser.error("--intakes needs the router's intake apart from its stage")
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
        if args.broker_warmup_seconds > 0 and broker.pid is not None:
            warmed = asyncio.run(broker_warmup.warm(broker.bootstrap_servers, broker.pid,
                                                    max_seconds=args.broker_warmup_seconds))
            print(f"broker warmed for {warmed.seconds:.0f}s: its JIT compiler threads at"
                  f" {warmed.compiler_cores:.3f} cores over the last 5 s"
                  + ("" if warmed.settled else " (not settled: time limit)"), flush=True)
        customers = [g.customer["customer_id"] for g in demo.generate(min(args.customers,
                                                                          20_000))]
        bench = Bench(broker.bootstrap_servers, customers, args.seconds, args.grace,
                      args.max_p99, broker_pid=broker.pid,
                      pipeline_warmup_seconds=args.pipeline_warmup_seconds,
                      log=lambda line: print(line, flush=True))
        pipelines = [args.only] if args.only else list(PIPELINES)
        for run in range(args.runs):
            for name in pipelines if run % 2 == 0 else reversed(pipelines):
                print(f"run {run + 1}/{args.runs}: {name} (started at"
                      f" {time.monotonic() - began:.0f}s)", flush=True)
                running = (start_project(broker.bootstrap_servers, home, args.customers,
                                         split=not args.one_router,
                                         intakes=args.intakes) if name == "project"
                           else start_baseline(broker.bootstrap_servers, home,
                                               exactly_once=name == "baseline-eo"))
                try:
                    results.setdefault(name, []).append(
                        run_pipeline(bench, running, rates, args.skip_max,
                                     args.intake_seconds))
                    if args.profile and run == 0:
                        profile(bench, running, args.profile,
                                args.seconds if args.profile_rate else args.intake_seconds,
                                args.profile_rate)
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
