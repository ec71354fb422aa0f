"""The intake (the router, a process) over real HTTP against a real broker: the one
component under test, no other stage running."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from devtools import ports, processes
from devtools.kafka_broker import LocalKafka
from devtools.postgres import LocalPostgres
from services.core import db, topics
from services.router.intake_keys import IntakeKeys
from services.router.service.accepting import scoped_key
from tests import credentials, intake_process
from tests.conftest import read_topic, unique
from tests.intake_process import Intake

TICKET = {"subject": "Invoice question", "body": "Where is my invoice?", "channel": "email",
          "kind": "question", "language": "nl"}


@pytest.fixture(scope="module")
def intake(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Intake]:
    with intake_process.running(kafka_bootstrap, tmp_path_factory.mktemp("intake")) as running:
        yield running


class TestAccepted:
    async def test_accepted_ticket_is_on_the_incoming_topic_keyed_by_customer(
            self, intake: Intake) -> None:
        customer = unique("cust")
        async with httpx.AsyncClient() as client:
            response = await client.post(f"{intake.url()}/v1/tickets",
                                         json={**TICKET, "customer_id": customer},
                                         headers={"X-Correlation-ID": "corr-1",
                                                  **intake.headers()})
        assert response.status_code == 202
        body = response.json()
        assert body["status"] == "accepted"
        found = await read_topic(intake.bootstrap, topics.INCOMING, until=1,
                                 keep=lambda e: e.ticket_id == body["ticket_id"])
        assert len(found) == 1
        event, record = found[0]
        assert record.key == customer.encode()  # type: ignore[attr-defined]
        assert event.type == "ticket.received"
        assert event.correlation_id == "corr-1"
        assert event.data["subject"] == "Invoice question"


class TestIdempotentReplay:
    async def test_a_replay_answers_the_first_ticket_and_correlation_id(
            self, intake: Intake) -> None:
        ticket = {**TICKET, "customer_id": unique("cust")}
        headers = {"Idempotency-Key": unique("key"), **intake.headers()}
        async with httpx.AsyncClient() as client:
            first = await client.post(f"{intake.url()}/v1/tickets", json=ticket,
                                      headers={"X-Correlation-ID": "corr-first", **headers})
            replay = await client.post(f"{intake.url()}/v1/tickets", json=ticket,
                                       headers=headers)  # the retry lost the header
        assert (first.status_code, replay.status_code) == (202, 202)
        assert replay.json() == first.json()
        assert replay.json()["correlation_id"] == "corr-first"


class TestBadInput:
    async def test_each_bad_field_is_named(self, intake: Intake) -> None:
        async with httpx.AsyncClient() as client:
            response = await client.post(
                f"{intake.url()}/v1/tickets",
                json={"customer_id": "", "subject": "x", "channel": "fax", "kind": "rant",
                      "colour": "red"}, headers=intake.headers())
        assert response.status_code == 422
        fields = {f["field"]: f["problem"] for f in response.json()["fields"]}
        assert set(fields) == {"body.customer_id", "body.body", "body.channel", "body.kind",
                               "body.colour"}
        assert "'email'" in fields["body.channel"]  # says what is accepted

    async def test_a_subject_of_only_spaces_is_named(self, intake: Intake) -> None:
        async with httpx.AsyncClient() as client:
            response = await client.post(
                f"{intake.url()}/v1/tickets",
                json={**TICKET, "customer_id": unique("cust"), "subject": " \t "},
                headers=intake.headers())
        assert response.status_code == 422
        assert response.json()["fields"] == [{
            "field": "body.subject", "type": "value_error",
            "problem": "must say something: it holds only spaces"}]

    async def test_malformed_json_is_a_422_not_a_500(self, intake: Intake) -> None:
        async with httpx.AsyncClient() as client:
            response = await client.post(f"{intake.url()}/v1/tickets",
                                         content=b"{not json",
                                         headers={"content-type": "application/json",
                                                  **intake.headers()})
        assert response.status_code == 422

    async def test_a_value_no_stage_could_carry_fails_its_request_alone(
            self, intake: Intake) -> None:
        """Odd but valid JSON, posted at the same moment as good tickets (so they would
        share one group transaction): each odd one is a 422 naming its field, and every
        good one is accepted and reaches tickets.incoming."""
        odd = [
            ("attributes.n", b'"attributes": {"n": 100000000000000000000000000}'),
            ("attributes.n", b'"attributes": {"n": NaN}'),
            ("attributes.n", b'"attributes": {"n": 1e999}'),
            ("attributes.s", b'"attributes": {"s": "\\ud800"}'),
            ("subject", b'"subject": "\\udc00"'),
        ]
        url = f"{intake.url()}/v1/tickets"
        headers = {"content-type": "application/json", **intake.headers()}

        def raw(extra: bytes) -> bytes:
            return (b'{"customer_id": "c-odd", "body": "b", "channel": "api", '
                    + extra + (b"" if extra.startswith(b'"subject"') else b', "subject": "s"')
                    + b"}")

        async with httpx.AsyncClient() as client:
            answers = await asyncio.gather(
                *(client.post(url, content=raw(extra), headers=headers)
                  for _, extra in odd),
                *(client.post(url, json={**TICKET, "customer_id": unique("good")},
                              headers=intake.headers()) for _ in range(10)))
        refused, accepted = answers[:len(odd)], answers[len(odd):]
        for (field, _), answer in zip(odd, refused, strict=True):
            assert answer.status_code == 422, answer.text
            assert answer.json()["fields"][0]["field"] == f"body.{field}"
        assert [answer.status_code for answer in accepted] == [202] * 10
        ids = {answer.json()["ticket_id"] for answer in accepted}
        found = await read_topic(intake.bootstrap, topics.INCOMING, until=10,
                                 keep=lambda e: e.ticket_id in ids)
        assert len(found) == 10

    async def test_a_correlation_id_is_printable_ascii_without_spaces(
            self, intake: Intake) -> None:
        """It travels into every record, log line and callback of the ticket: a space, a
        tab, a letter past ASCII or one past 128 characters is a 422 naming the header
        (other control characters the HTTP server refuses itself, 400)."""
        url = f"{intake.url()}/v1/tickets"
        async with httpx.AsyncClient() as client:
            for bad in (b"a b", b"a\tb", "café".encode(), b"x" * 129):
                answer = await client.post(url, json={**TICKET, "customer_id": unique("c")},
                                           headers={"X-Correlation-ID": bad,
                                                    **intake.headers()})
                assert answer.status_code == 422, (bad, answer.text)
                assert answer.json()["fields"][0]["field"] == "header.X-Correlation-ID"
            good = await client.post(url, json={**TICKET, "customer_id": unique("c")},
                                     headers={"X-Correlation-ID": "x" * 128,
                                              **intake.headers()})
            empty = await client.post(url, json={**TICKET, "customer_id": unique("c")},
                                      headers={"X-Correlation-ID": "", **intake.headers()})
        assert good.status_code == 202, good.text
        assert good.json()["correlation_id"] == "x" * 128
        # Empty: as if not sent, the ticket's id stands in.
        assert empty.status_code == 202, empty.text
        assert empty.json()["correlation_id"] == empty.json()["ticket_id"]

    async def test_report_of_unknown_type_is_rejected(self, intake: Intake) -> None:
        async with httpx.AsyncClient() as client:
            response = await client.post(f"{intake.url()}/v1/tickets/t-1/events",
                                         json={"type": "closed"},
                                         headers=intake.headers("admin"))
        assert response.status_code == 422
        assert response.json()["fields"][0]["field"] == "body.type"


@dataclass
class OwnBroker:
    """A router (the intake) on a broker of its own, which a test stops and starts."""

    broker: LocalKafka
    url: str
    tickets_url: str
    headers: dict[str, str]


@contextlib.contextmanager
def router_on_own_broker(tmp_path: Path, *, stage: bool = True) -> Iterator[OwnBroker]:
    """The router, with its routing stage or (`stage=False`) serving the intake alone,
    as the chart's `router` instances do (ROUTER_STAGE=false)."""
    broker = LocalKafka(tmp_path / "kafka")
    service_ports = ports.free_ports_by_name(processes.SERVICES)
    env = processes.service_env(
        bootstrap=broker.bootstrap_servers,
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'store.db'}", ports=service_ports,
        extra={"PRODUCE_TIMEOUT_SECONDS": "2", "RETRY_AFTER_SECONDS": "7",
               "ROUTER_STAGE": str(stage).lower()})
    router = processes.ServiceProcess("router", service_ports["router"], env,
                                      tmp_path / "router.log")
    try:
        broker.start()
        router.start()
        router.wait_ready(timeout=90)
        yield OwnBroker(broker, router.url, f"{router.url}/v1/tickets", credentials.bearer(
            credentials.issue_token_blocking(env["DATABASE_URL"], "platform", "tests")))
    finally:
        router.stop()
        broker.stop()


def test_kafka_down_gives_503_with_retry_after_and_recovers(tmp_path: Path) -> None:
    """The intake alone (no stage): it stays ready while the broker is down, so that a
    load balancer keeps giving platforms the 503 that tells them to retry."""
    ticket = {**TICKET, "customer_id": "cust-1"}
    with router_on_own_broker(tmp_path, stage=False) as own, httpx.Client(
            headers=own.headers, timeout=10) as client:
        assert client.post(own.tickets_url, json=ticket).status_code == 202

        own.broker.stop()
        down = client.post(own.tickets_url, json=ticket)
        assert down.status_code == 503
        assert down.headers["Retry-After"] == "7"
        assert down.json()["error"] == "unavailable"
        assert client.get(f"{own.url}/readyz").status_code == 200

        own.broker.start()
        statuses = []
        for _ in range(30):
            statuses.append(client.post(own.tickets_url, json=ticket).status_code)
            if statuses[-1] == 202:
                break
        assert statuses[-1] == 202, statuses


async def test_ticket_answered_503_is_never_delivered_once_kafka_is_back(
        tmp_path: Path) -> None:
    """The intake's producer keeps a timed-out ticket's records; they must stay in a
    transaction that is never committed, invisible to read_committed readers."""
    customer = unique("cust")
    with router_on_own_broker(tmp_path) as own:
        async with httpx.AsyncClient(timeout=10, headers=own.headers) as client:

            async def post(subject: str) -> int:
                response = await client.post(own.tickets_url, json={
                    **TICKET, "customer_id": customer, "subject": subject})
                return response.status_code

            assert await post("before the outage") == 202
            await asyncio.to_thread(own.broker.stop)
            assert await post("answered 503") == 503
            # Its routing stage, with no records to route, has met no outage: ready.
            assert (await client.get(f"{own.url}/readyz")).status_code == 200
            await asyncio.to_thread(own.broker.start)
            # Until the intake is back: each 503 here must not be delivered either.
            statuses: list[int] = []
            while 202 not in statuses and len(statuses) < 30:
                statuses.append(await post("after the outage"))
            assert statuses[-1] == 202, statuses
        # Long enough for a late commit of the 503'd ticket to show, were there one.
        found = await read_topic(own.broker.bootstrap_servers, topics.INCOMING, until=2,
                                 settle=5.0,
                                 keep=lambda event: event.data["customer_id"] == customer)
    assert sorted(event.data["subject"] for event, _ in found) == [
        "after the outage", "before the outage"]


async def test_a_keyed_retry_after_a_503_is_taken_at_once_under_the_same_ticket_id(
        tmp_path: Path) -> None:
    """README, "Idempotency-Key": a 503 leaves nothing in flight. A retry under the same
    key is not told 409 in_progress while the first request's claim would run: it is
    taken (503 again while Kafka is down), and once Kafka is back answered 202 with the
    ticket id the key was first claimed with, the only id the ticket is delivered under."""
    customer, key = unique("cust"), unique("k-503")
    ticket = {**TICKET, "customer_id": customer}
    with router_on_own_broker(tmp_path, stage=False) as own:
        async with httpx.AsyncClient(timeout=10, headers={
                **own.headers, "Idempotency-Key": key}) as client:
            await asyncio.to_thread(own.broker.stop)
            down = [await client.post(own.tickets_url, json=ticket) for _ in range(2)]
            assert [answer.status_code for answer in down] == [503, 503], [
                answer.text for answer in down]
            claimed = await claimed_ticket(f"sqlite+aiosqlite:///{tmp_path / 'store.db'}",
                                           platform="tests", key=key)
            await asyncio.to_thread(own.broker.start)
            statuses: list[int] = []
            while len(statuses) < 30:
                answer = await client.post(own.tickets_url, json=ticket)
                statuses.append(answer.status_code)
                if answer.status_code != 503:
                    break
            assert statuses[-1] == 202 and set(statuses) <= {202, 503}, statuses
            assert answer.json()["ticket_id"] == claimed
        found = await read_topic(own.broker.bootstrap_servers, topics.INCOMING, until=1,
                                 settle=3.0,
                                 keep=lambda event: event.data["customer_id"] == customer)
    assert {event.ticket_id for event, _ in found} == {claimed}


async def claimed_ticket(database_url: str, *, platform: str, key: str) -> str:
    """The ticket id `platform`'s `key` was claimed with, as the intake's store holds it."""
    engine = db.engine(database_url)
    try:
        row = await IntakeKeys(db.sessions(engine)).find(scoped_key(platform, key))
    finally:
        await engine.dispose()
    assert row is not None
    return row.ticket_id


class TestTheStoreDown:
    """README, "What is not guaranteed": while the SQL store is down, a POST with an
    `Idempotency-Key` gets 503 (the key cannot be checked); posts without one flow."""

    async def test_a_keyed_post_is_503_and_one_without_a_key_is_taken(
            self, kafka_bootstrap: str, tmp_path: Path) -> None:
        store = LocalPostgres(tmp_path / "postgres")
        await asyncio.to_thread(store.start)
        try:
            with intake_process.running(kafka_bootstrap, tmp_path,
                                        database_url=store.url) as intake:
                url, headers = f"{intake.url()}/v1/tickets", intake.headers()
                customer = unique("cust")
                ticket = {**TICKET, "customer_id": customer}
                async with httpx.AsyncClient(timeout=30, headers=headers) as client:
                    before = await client.post(url, json=ticket)  # the key read once
                    assert before.status_code == 202, before.text
                    await asyncio.to_thread(store.stop)

                    keyed = await client.post(url, json={**ticket, "subject": "keyed"},
                                              headers={"Idempotency-Key": unique("key")})
                    unkeyed = await client.post(url, json={**ticket, "subject": "unkeyed"})
                assert keyed.status_code == 503, keyed.text
                assert keyed.headers["Retry-After"] == "5"
                assert keyed.json()["error"] == "unavailable"
                assert unkeyed.status_code == 202, unkeyed.text
                found = await read_topic(  # the shared broker's: other tests' records too
                    intake.bootstrap, topics.INCOMING, until=2,
                    keep=lambda event: event.data.get("customer_id") == customer)
                assert sorted(event.data["subject"] for event, _ in found) == [
                    TICKET["subject"], "unkeyed"]
        finally:
            await asyncio.to_thread(store.remove)
