"""SIGKILL the router and the segmenter, several times each, while a few thousand
tickets flow; afterwards a `read_committed` reader must find every ticket the intake
acknowledged in a department queue exactly once."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from devtools import demo
from tests.conftest import Pipeline, department_lanes, read_topic, unique

TICKETS = 3000
POSTERS = 8
KILLS_EACH = 3
DEPARTMENTS = ("public_sector", "business_desk", "key_accounts", "account_development",
               "sales_support", "customer_care")
CUSTOMERS = ["gov-ministry-1", "org-acme-1", "ind-vip-1", "ind-rising-1", "ind-loyal-1",
             "ind-new-1", "stranger-1", "stranger-2"]


@pytest.fixture
def crash_pipeline(kafka_bootstrap: str, tmp_path: Path) -> Iterator[Pipeline]:
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
    asyncio.run(demo.seed_if_empty(database_url, count=100))
    running = Pipeline(kafka_bootstrap, database_url, tmp_path / "logs",
                       extra_env={"DELIVERY": "exactly_once",
                                  # As fast as the intake goes: no per-key limit.
                                  "INTAKE_RATE_LIMIT": "100000/second"})
    running.start()
    try:
        yield running
    finally:
        running.stop()


async def test_sigkill_router_and_segmenter_loses_and_duplicates_nothing(
        crash_pipeline: Pipeline) -> None:
    url = crash_pipeline.url("router")
    run = unique("crash")
    accepted: set[str] = set()
    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in range(TICKETS):
        queue.put_nowait(n)

    async def poster() -> None:
        async with httpx.AsyncClient(timeout=10, headers=crash_pipeline.headers()) as client:
            while not queue.empty():
                n = queue.get_nowait()
                try:
                    response = await client.post(
                        f"{url}/v1/tickets", headers={"Idempotency-Key": f"{run}-{n}"}, json={
                            "customer_id": CUSTOMERS[n % len(CUSTOMERS)],
                            "subject": f"crash {n}", "body": "b", "channel": "api"})
                except httpx.HTTPError:
                    # The intake is down (killed with the router): post it again later,
                    # with the same key, as a platform would.
                    queue.put_nowait(n)
                    await asyncio.sleep(0.2)
                    continue
                if response.status_code == 202:
                    accepted.add(response.json()["ticket_id"])
                elif response.status_code in (409, 429, 503):  # in flight, not accepted
                    queue.put_nowait(n)
                    await asyncio.sleep(0.2)

    async def killer() -> float:
        rng = random.Random(3)
        started = time.monotonic()
        for victim in ["segmenter", "router"] * KILLS_EACH:
            await asyncio.sleep(rng.uniform(1.5, 3.0))
            service = crash_pipeline.services[victim]
            service.kill()
            await asyncio.sleep(0.5)
            service.start()
            await asyncio.to_thread(service.wait_ready, 90)
        return time.monotonic() - started

    posting = [asyncio.create_task(poster()) for _ in range(POSTERS)]
    chaos = await killer()
    await asyncio.gather(*posting)

    found = await read_topic(crash_pipeline.bootstrap, *department_lanes(*DEPARTMENTS),
                             until=len(accepted), within=180, settle=5.0,
                             keep=lambda e: e.data.get("subject", "").startswith("crash "))
    copies = Counter(event.ticket_id for event, _ in found)
    delivered = {ticket_id for ticket_id in copies if ticket_id in accepted}
    lost = accepted - delivered
    duplicated = {ticket_id for ticket_id, count in copies.items() if count > 1}
    print(f"\ncrash test: {KILLS_EACH} SIGKILLs each of router and segmenter over"
          f" {chaos:.0f}s\n  sent {TICKETS}, accepted {len(accepted)}, delivered"
          f" {len(delivered)}, lost {len(lost)}, duplicated {len(duplicated)},"
          f" delivered without acknowledgement {len(set(copies) - accepted)};"
          f" second copies the router dropped"
          f" {crash_pipeline.logs().count('copy of a routed ticket dropped')}")
    # Every ticket was posted until it got its 202, retries with the same key.
    assert len(accepted) == TICKETS
    assert not lost
    assert not duplicated
    assert not set(copies) - accepted, "a retry made a second ticket"
