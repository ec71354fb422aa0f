"""Latency from POST /v1/tickets to the ticket's arrival in its department queue.

Run against a running pipeline (`bin/run`), with a support platform's token:
    API_TOKEN=rt_... .venv/bin/python -m bench.post_to_queue --count 50
(`bin/run` writes a demo platform's token to .data/credentials.env as PLATFORM_TOKEN.)
Prints the median and p90 over `count` tickets, posted one at a time, each read back by a
consumer that is already positioned at the end of the queue.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time

import httpx
from aiokafka import AIOKafkaConsumer

from services.core import envelope
from services.router import priority


async def measure(router_url: str, bootstrap: str, customer_id: str, department: str,
                  count: int, token: str) -> list[float]:
    consumer = AIOKafkaConsumer(*priority.lane_topics(department),
                                bootstrap_servers=bootstrap, auto_offset_reset="latest",
                                isolation_level="read_committed")
    await consumer.start()
    await consumer.getmany(timeout_ms=500)  # join and settle at the end of the queue
    latencies = []
    try:
        async with httpx.AsyncClient(timeout=10,
                                     headers={"Authorization": f"Bearer {token}"}) as client:
            for n in range(count):
                started = time.perf_counter()
                response = await client.post(f"{router_url}/v1/tickets", json={
                    "customer_id": customer_id, "subject": f"bench {n}", "body": "b",
                    "channel": "api"})
                response.raise_for_status()
                ticket_id = response.json()["ticket_id"]
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    batch = await consumer.getmany(timeout_ms=1000)
                    ids = {envelope.from_record(r.headers, r.value).ticket_id
                           for records in batch.values() for r in records}
                    if ticket_id in ids:
                        latencies.append(time.perf_counter() - started)
                        break
                else:
                    raise SystemExit(f"ticket {ticket_id} not in {department}'s lanes after 30s")
    finally:
        await consumer.stop()
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--router-url", default="http://127.0.0.1:8080")
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--customer", default="gov-ministry-1")
    parser.add_argument("--department", default="public_sector")
    parser.add_argument("--count", type=int, default=50)
    parser.add_argument("--token", default=os.environ.get("API_TOKEN"),
                        help="a support platform's token (default: $API_TOKEN)")
    args = parser.parse_args()
    if not args.token:
        parser.error("a platform token is needed: --token or API_TOKEN")
    latencies = asyncio.run(measure(args.router_url, args.bootstrap, args.customer,
                                    args.department, args.count, args.token))
    ordered = sorted(latencies)
    print(f"POST -> {args.department} queue, {len(ordered)} tickets: "
          f"median {statistics.median(ordered) * 1000:.1f} ms, "
          f"p90 {ordered[int(0.9 * (len(ordered) - 1))] * 1000:.1f} ms, "
          f"max {ordered[-1] * 1000:.1f} ms")


if __name__ == "__main__":
    main()
