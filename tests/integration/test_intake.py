"""The intake over real HTTP against a real broker."""

from __future__ import annotations

from pathlib import Path

import httpx

from services.core import topics
from services.local import ports, processes
from services.local.kafka_broker import LocalKafka
from tests.conftest import Pipeline, read_topic, unique

TICKET = {"subject": "Invoice question", "body": "Where is my invoice?", "channel": "email",
          "kind": "question", "language": "nl"}


class TestAccepted:
    async def test_accepted_ticket_is_on_the_incoming_topic_keyed_by_customer(
            self, pipeline: Pipeline) -> None:
        customer = unique("cust")
        async with httpx.AsyncClient() as client:
            response = await client.post(f"{pipeline.url('router')}/v1/tickets",
                                         json={**TICKET, "customer_id": customer},
                                         headers={"X-Correlation-ID": "corr-1"})
        assert response.status_code == 202
        body = response.json()
        assert body["status"] == "accepted"
        found = await read_topic(pipeline.bootstrap, topics.INCOMING, until=1,
                                 keep=lambda e: e.ticket_id == body["ticket_id"])
        assert len(found) == 1
        event, record = found[0]
        assert record.key == customer.encode()  # type: ignore[attr-defined]
        assert event.type == "ticket.received"
        assert event.correlation_id == "corr-1"
        assert event.data["subject"] == "Invoice question"


class TestBadInput:
    async def test_each_bad_field_is_named(self, pipeline: Pipeline) -> None:
        async with httpx.AsyncClient() as client:
            response = await client.post(
                f"{pipeline.url('router')}/v1/tickets",
                json={"customer_id": "", "subject": "x", "channel": "fax", "kind": "rant",
                      "colour": "red"})
        assert response.status_code == 422
        fields = {f["field"]: f["problem"] for f in response.json()["fields"]}
        assert set(fields) == {"body.customer_id", "body.body", "body.channel", "body.kind",
                               "body.colour"}
        assert "'email'" in fields["body.channel"]  # says what is accepted

    async def test_malformed_json_is_a_422_not_a_500(self, pipeline: Pipeline) -> None:
        async with httpx.AsyncClient() as client:
            response = await client.post(f"{pipeline.url('router')}/v1/tickets",
                                         content=b"{not json",
                                         headers={"content-type": "application/json"})
        assert response.status_code == 422

    async def test_report_of_unknown_type_is_rejected(self, pipeline: Pipeline) -> None:
        async with httpx.AsyncClient() as client:
            response = await client.post(f"{pipeline.url('router')}/v1/tickets/t-1/events",
                                         json={"type": "closed"})
        assert response.status_code == 422
        assert response.json()["fields"][0]["field"] == "body.type"


def test_kafka_down_gives_503_with_retry_after_and_recovers(tmp_path: Path) -> None:
    """A broker of its own, stopped and started again under a running intake."""
    broker = LocalKafka(tmp_path / "kafka")
    broker.start()
    service_ports = {name: ports.free_port() for name in processes.SERVICES}
    env = processes.service_env(
        bootstrap=broker.bootstrap_servers,
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'store.db'}", ports=service_ports,
        extra={"PRODUCE_TIMEOUT_SECONDS": "2", "RETRY_AFTER_SECONDS": "7"})
    router = processes.ServiceProcess("router", service_ports["router"], env,
                                      tmp_path / "router.log")
    url = f"{router.url}/v1/tickets"
    ticket = {**TICKET, "customer_id": "cust-1"}
    try:
        router.start()
        router.wait_ready(timeout=90)
        assert httpx.post(url, json=ticket, timeout=10).status_code == 202

        broker.stop()
        down = httpx.post(url, json=ticket, timeout=10)
        assert down.status_code == 503
        assert down.headers["Retry-After"] == "7"
        assert down.json()["error"] == "unavailable"

        broker.start()
        statuses = []
        for _ in range(30):
            statuses.append(httpx.post(url, json=ticket, timeout=10).status_code)
            if statuses[-1] == 202:
                break
        assert statuses[-1] == 202, statuses
    finally:
        router.stop()
        broker.stop()


