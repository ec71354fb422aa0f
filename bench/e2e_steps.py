"""One measured step of the end-to-end benchmark: a constant offered rate, open loop,
read back from the department lanes; and the search for the highest sustainable rate."""

from __future__ import annotations

import asyncio
import math
import multiprocessing
import os
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from bench import broker_warmup, e2e_load
from bench.e2e_pipelines import Running
from bench.e2e_probes import cpu_by_process, per_transaction, transactions

IDLE_SAMPLE_SECONDS = 3.0
# Each pipeline's own warm-up (Bench.warm_up): its load, and the window its broker's
# compiler threads are read over.
WARM_RATE = 100
WARM_WINDOW_SECONDS = 5.0


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
    # Accepted -> first readable on each topic on the way (hops, then the lanes), ms.
    readable_p50_ms: dict[str, float] = field(default_factory=dict)
    readable_p99_ms: dict[str, float] = field(default_factory=dict)
    # CPU milliseconds per accepted ticket, per process, over the step and its drain:
    # robust where wall-clock figures are not (a machine shared with other work).
    cpu_ms_per_ticket: dict[str, float] = field(default_factory=dict)
    # Mean requests (intake) or records (each stage) a transaction, over the same span.
    per_transaction: dict[str, float] = field(default_factory=dict)
    passed: bool = False


@dataclass
class Bench:
    bootstrap: str
    customers: list[str]
    seconds: float
    grace: float
    max_p99_ms: float
    broker_pid: int | None = None
    pipeline_warmup_seconds: float = 0.0
    drain: float = 60.0
    tag_counter: int = 0
    log: Callable[[str], None] = field(default=print)

    def tag(self, name: str) -> str:
        self.tag_counter += 1
        return f"e2e-{name}-{self.tag_counter}-{os.getpid()}"

    def requests(self, running: Running, tag: str) -> Callable[[int], tuple[str, bytes]]:
        """The n-th request of a load: a ticket from a random customer, its subject
        `tag` and n (how the lane reader matches it)."""
        rng = random.Random(self.tag_counter)

        def make(n: int) -> tuple[str, bytes]:
            subject = f"{tag} {n}"
            body = e2e_load.ticket_body(rng.choice(self.customers), subject)
            return subject, e2e_load.post_request(running.port, running.token, body)

        return make

    def measure(self, running: Running, rate: float, seconds: float) -> Step:
        """One constant offered rate, open loop; the lane reader in its own process."""
        context = multiprocessing.get_context("spawn")
        ours, theirs = context.Pipe()
        reader = context.Process(target=e2e_load.reader_process,
                                 args=(self.bootstrap, running.lanes, running.hops, theirs),
                                 daemon=True)
        reader.start()
        try:
            if not ours.poll(60) or ours.recv() != "ready":
                raise RuntimeError("the lane reader did not start")
            make = self.requests(running, self.tag(running.name))
            # The pipeline's CPU when idle (its background jobs, consumers polling), over
            # IDLE_SAMPLE_SECONDS, is taken off what the step used.
            idle_before = cpu_by_process(running, self.broker_pid)
            time.sleep(IDLE_SAMPLE_SECONDS)
            cpu_before = cpu_by_process(running, self.broker_pid)
            transactions_before = transactions(running)
            began = time.monotonic()
            sent = asyncio.run(e2e_load.open_loop(running.port, rate, seconds, make))
            accepted = {s.subject: s for s in sent if s.status == 202}
            last_answer = max((s.answered for s in sent), default=time.time())
            grace_deadline = last_answer + self.grace
            ours.send((list(accepted), 1.0, grace_deadline, grace_deadline + self.drain))
            if not ours.poll(self.grace + self.drain + 60):
                raise RuntimeError("the lane reader did not answer")
            seen: dict[str, list[float]]
            crossed: dict[str, dict[str, float]]
            seen, crossed = ours.recv()
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
        crossed["lanes"] = {subject: times[0] for subject, times in seen.items()}
        for topic, first_read in crossed.items():
            waited = [(first_read[subject] - accepted[subject].sent) * 1e3
                      for subject in accepted if subject in first_read]
            step.readable_p50_ms[topic] = e2e_load.percentile(waited, 0.5)
            step.readable_p99_ms[topic] = e2e_load.percentile(waited, 0.99)
        # A stray timeout on this shared machine does not fail a step; 0.5% do.
        step.passed = (step.accepted >= 0.995 * step.offered
                       and step.delivered == step.accepted
                       and step.duplicates == 0 and step.e2e_p99_ms <= self.max_p99_ms)
        self.log(f"  {running.name} {rate:g}/s x {seconds:g}s: {describe(step)}")
        self.log("    sent -> readable p50/p99, ms: " + ", ".join(
            f"{topic} {step.readable_p50_ms[topic]:.0f}/{step.readable_p99_ms[topic]:.0f}"
            for topic in step.readable_p50_ms))
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
        step.per_transaction = per_transaction(transactions_before, transactions(running))
        if step.per_transaction:
            self.log("    requests (intake) or records (stages) a transaction, mean: " + ", ".join(
                f"{who} {mean:.1f}" for who, mean in step.per_transaction.items()))
        return step

    def warm_up(self, running: Running) -> None:
        """40 tickets through; then WARM_RATE tickets/s in windows of WARM_WINDOW_SECONDS
        until the broker's JIT compiler threads use under broker_warmup's bound over a
        window (after two at least), or `pipeline_warmup_seconds` pass.

        The broker's own warm-up (bench/broker_warmup.py) leaves it compiling again for
        each pipeline's requests: measured, 0.5-0.7 of a core in the project's first
        10 s after it, which its first steps shared."""
        step = self.measure(running, 20, 2)
        if step.delivered < step.accepted or step.accepted == 0:
            raise RuntimeError(f"{running.name}: warm-up tickets not delivered: {step}")
        if self.broker_pid is None or self.pipeline_warmup_seconds <= 0:
            return
        make = self.requests(running, self.tag(f"{running.name}-warm"))
        warmed = broker_warmup.until_settled(
            self.broker_pid, self.pipeline_warmup_seconds,
            lambda: asyncio.run(e2e_load.open_loop(running.port, WARM_RATE,
                                                   WARM_WINDOW_SECONDS, make)))
        asyncio.run(e2e_load.wait_quiet(self.bootstrap, running.lanes))
        self.log(f"  {running.name} warmed at {WARM_RATE}/s for {warmed.seconds:.0f}s: the"
                 f" broker's JIT compiler threads at {warmed.compiler_cores:.3f} cores over"
                 f" the last {WARM_WINDOW_SECONDS:g} s"
                 + ("" if warmed.settled else " (not settled: time limit)"))

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
