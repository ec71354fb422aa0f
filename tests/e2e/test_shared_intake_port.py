"""Several intake processes serving one port (INTAKE_SHARED_PORT, SO_REUSEPORT), as
`bench.e2e --intakes N` runs them: each accepts tickets on the shared port, each under
an instance id of its own (its own transactional ids), and every ticket accepted by
either reaches its department's queue once."""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from devtools import demo, ports, processes
from tests import credentials
from tests.conftest import TEST_ROUTING_TABLE, department_lanes, read_topic

TICKETS = 40
ACCEPTED = re.compile(r'^routing_intake_tickets_accepted_total\{channel="web"\} (\S+)$',
                      re.MULTILINE)


@pytest.fixture
def two_intakes(kafka_bootstrap: str, tmp_path: Path
                ) -> Iterator[tuple[list[processes.ServiceProcess], str, str]]:
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
    asyncio.run(demo.seed_if_empty(database_url, count=50))
    token = credentials.issue_token_blocking(database_url, "platform", "tests")
    service_ports = ports.free_ports_by_name(
        (*processes.SERVICES, processes.ROUTER_STAGE_INSTANCE,
         *processes.intake_port_names(2)))
    env = processes.service_env(bootstrap=kafka_bootstrap, database_url=database_url,
                                ports=service_ports,
                                extra={"ROUTING_TABLE_FILE": str(TEST_ROUTING_TABLE)})
    started = processes.pipeline_processes(env, service_ports, tmp_path / "logs",
                                           split=True, intakes=2)
    try:
        for service in started:
            service.start()
        for service in started:
            service.wait_ready(timeout=90)
        intakes = [s for s in started if s.env.get("INTAKE_SHARED_PORT")]
        yield intakes, f"http://127.0.0.1:{service_ports['router']}", token
    finally:
        for service in started:
            service.stop()


async def test_two_intakes_share_the_port_and_each_ticket_goes_once(
        two_intakes: tuple[list[processes.ServiceProcess], str, str],
        kafka_bootstrap: str) -> None:
    intakes, shared, token = two_intakes
    assert len(intakes) == 2
    assert len({s.env.get("INSTANCE_ID", "0") for s in intakes}) == 2
    assert {s.port for s in intakes}.isdisjoint({int(shared.rsplit(":", 1)[1])})
    accepted: set[str] = set()
    for n in range(TICKETS):
        # A connection each: the kernel hands each new connection to one of the two.
        async with httpx.AsyncClient(timeout=10) as client:
            response = await client.post(
                f"{shared}/v1/tickets", headers=credentials.bearer(token),
                json={"customer_id": "gov-ministry-1", "subject": f"Shared {n}",
                      "body": "Hello", "channel": "web"})
        assert response.status_code == 202, response.text
        accepted.add(response.json()["ticket_id"])
    found = await read_topic(kafka_bootstrap, *department_lanes("public_sector"),
                             until=TICKETS, within=90, settle=3.0,
                             keep=lambda event: event.ticket_id in accepted)
    copies = Counter(event.ticket_id for event, _ in found)
    assert set(copies) == accepted and max(copies.values()) == 1
    async with httpx.AsyncClient(timeout=10) as client:
        counted = [float(match.group(1)) if (match := ACCEPTED.search(
            (await client.get(f"{intake.url}/metrics")).text)) else 0.0
            for intake in intakes]
    # Each process counts what it accepted, on its own port: both took some.
    assert sum(counted) == TICKETS
    assert min(counted) > 0
