"""Several intake processes serving one port (INTAKE_SHARED_PORT, SO_REUSEPORT), as
`bench.e2e --intakes N` runs them: each accepts tickets on the shared port, each under
an instance id of its own (its own transactional ids), and every ticket accepted by
either reaches its department's queue once."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from devtools import processes
from tests import credentials
from tests.conftest import department_lanes, read_topic
from tests.e2e import split_pipeline

TICKETS = 40
ACCEPTED = re.compile(r'^routing_intake_tickets_accepted_total\{channel="web"\} (\S+)$',
                      re.MULTILINE)


@pytest.fixture
def two_intakes(kafka_bootstrap: str, tmp_path: Path
                ) -> Iterator[tuple[list[processes.ServiceProcess], str, str]]:
    with split_pipeline.running(kafka_bootstrap, tmp_path, intakes=2) as pipeline:
        intakes = [s for s in pipeline.services if s.env.get("INTAKE_SHARED_PORT")]
        yield intakes, f"http://127.0.0.1:{pipeline.ports['router']}", pipeline.token


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
