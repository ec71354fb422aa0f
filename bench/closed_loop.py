"""Closed-loop intake load for bench/e2e.py: wrk (2 threads), or Python callers on
keep-alive connections when wrk is missing; accepted requests per second."""

from __future__ import annotations

import asyncio
import math
import re
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.e2e_load import BODY, Connection, percentile


@dataclass
class ClosedLoopResult:
    accepted_per_second: float
    statuses: Counter[int]
    p50_ms: float
    p99_ms: float
    tool: str


async def closed_loop(port: int, connections: int, seconds: float,
                      make_request: Callable[[int], tuple[str, bytes]]) -> ClosedLoopResult:
    """`connections` callers, each on its own keep-alive connection, one request after
    the other, for `seconds`."""
    statuses: Counter[int] = Counter()
    latencies: list[float] = []
    counter = iter(range(10**9))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds

    async def caller() -> None:
        connection = await Connection.open(port)
        try:
            while loop.time() < deadline:
                _subject, request = make_request(next(counter))
                started = time.perf_counter()
                status = await asyncio.wait_for(connection.exchange(request), 30)
                statuses[status] += 1
                if status == 202:
                    latencies.append(time.perf_counter() - started)
        finally:
            connection.close()

    began = loop.time()
    await asyncio.gather(*(caller() for _ in range(connections)))
    elapsed = loop.time() - began
    return ClosedLoopResult(statuses[202] / elapsed, statuses, percentile(latencies, 0.5) * 1e3,
                            percentile(latencies, 0.99) * 1e3, "python")


WRK_SCRIPT = """
local customers = {%(customers)s}
local token = "%(token)s"
local counter = 0
local n_threads = 0
function setup(thread)
  n_threads = n_threads + 1
  thread:set("thread_id", n_threads)
end
function request()
  counter = counter + 1
  local body = string.format(
    '{"customer_id":"%%s","subject":"%(tag)s %%d %%d","body":"%(body)s",'
    .. '"channel":"email","kind":"question"}',
    customers[(counter %% #customers) + 1], thread_id or 0, counter)
  local headers = {["Content-Type"] = "application/json"}
  if token ~= "" then headers["Authorization"] = "Bearer " .. token end
  return wrk.format("POST", "/v1/tickets", headers, body)
end
"""


WRK_UNITS = {"ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def wrk_total(output: str) -> tuple[int, float]:
    """Requests wrk made and over how many seconds: "15064 requests in 1.00m" (wrk
    prints the duration in its own unit: 950.00ms, 5.00s, 1.00m)."""
    done = re.search(r"(\d+) requests in ([\d.]+)(ms|s|m|h)\b", output)
    if done is None:
        raise RuntimeError(f"wrk printed no total:\n{output}")
    return int(done.group(1)), float(done.group(2)) * WRK_UNITS[done.group(3)]


def wrk(port: int, connections: int, seconds: float, token: str | None,
        customers: list[str], tag: str) -> ClosedLoopResult:
    """wrk (2 threads) posting tickets for `seconds`; accepted = requests - non-2xx."""
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: it is Debian's `wrk` package (apt-get"
                         " install wrk); bench.e2e posts with Python callers without it")
    script = WRK_SCRIPT % {"customers": ",".join(f'"{c}"' for c in customers[:2000]),
                           "token": token or "", "tag": tag, "body": BODY}
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as file:
        file.write(script)
    try:
        output = subprocess.run(
            ["wrk", "-t2", f"-c{connections}", f"-d{round(seconds)}s", "--latency",
             "--timeout", "10s", "-s", file.name, f"http://127.0.0.1:{port}/v1/tickets"],
            capture_output=True, text=True, timeout=seconds + 60, check=True).stdout
    finally:
        Path(file.name).unlink()
    requests, elapsed = wrk_total(output)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    failed = int(non_2xx.group(1)) if non_2xx else 0

    def quantile(label: str) -> float:
        found = re.search(rf"\s{label}%\s+([\d.]+)(us|ms|s)", output)
        if found is None:
            return math.nan
        return float(found.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[found.group(2)]

    statuses: Counter[int] = Counter({202: requests - failed, -1: failed})
    return ClosedLoopResult((requests - failed) / elapsed, statuses, quantile("50"),
                            quantile("99"), "wrk")
