"""Intake throughput under concurrent load: `clients` callers post `count` tickets.

Run against a running pipeline (`bin/run`), with a support platform's token:
    API_TOKEN=rt_... .venv/bin/python -m bench.concurrent_posts --clients 16 --count 500
(mind its rate limit, INTAKE_RATE_LIMIT: the 429s are counted among the statuses)
Prints the answers by status, tickets accepted per second, and the POST -> 202 latency
(median, p90, max).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import statistics
import time

import httpx


async def post_all(router_url: str, customer_id: str, clients: int, count: int,
                   token: str) -> tuple[collections.Counter[int], list[float], float]:
    statuses: collections.Counter[int] = collections.Counter()
    latencies: list[float] = []
    numbers = iter(range(count))

    async def client_loop(client: httpx.AsyncClient) -> None:
        for n in numbers:
            started = time.perf_counter()
            response = await client.post(f"{router_url}/v1/tickets", json={
                "customer_id": customer_id, "subject": f"load {n}", "body": "b",
                "channel": "api"})
            statuses[response.status_code] += 1
            if response.status_code == 202:
                latencies.append(time.perf_counter() - started)

    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(timeout=30, limits=limits,
                                 headers={"Authorization": f"Bearer {token}"}) as client:
        began = time.perf_counter()
        await asyncio.gather(*(client_loop(client) for _ in range(clients)))
        elapsed = time.perf_counter() - began
    return statuses, latencies, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--router-url", default="http://127.0.0.1:8080")
    parser.add_argument("--customer", default="gov-ministry-1")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--token", default=os.environ.get("API_TOKEN"),
                        help="a support platform's token (default: $API_TOKEN)")
    args = parser.parse_args()
    if not args.token:
        parser.error("a platform token is needed: --token or API_TOKEN")
    statuses, latencies, elapsed = asyncio.run(
        post_all(args.router_url, args.customer, args.clients, args.count, args.token))
    ordered = sorted(latencies) or [0.0]
    print(f"{args.clients} clients, {args.count} tickets in {elapsed:.1f}s:"
          f" {statuses[202] / elapsed:.0f} accepted/s, statuses {dict(statuses)};"
          f" POST -> 202 median {statistics.median(ordered) * 1000:.1f} ms,"
          f" p90 {ordered[int(0.9 * (len(ordered) - 1))] * 1000:.1f} ms,"
          f" max {ordered[-1] * 1000:.1f} ms")


if __name__ == "__main__":
    main()
