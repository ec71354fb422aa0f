"""The pipeline on a secured broker: SASL_SSL (SCRAM-SHA-512) only, ACLs enforced, each
service and each department with its own user and no more rights than it needs
(tests/kafka_acls.py, the table in docs/kafka-security.md).

The topics are created beforehand by `routing topics` as the admin, as an operator would:
no service user may create topics. Their `ensure_topics` at start-up then finds them all,
and the router's first dead-letter replay the replay markers' topic.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    KafkaConnectionError,
    TopicAuthorizationFailedError,
    TransactionalIdAuthorizationFailed,
)
from pydantic import SecretStr

from devtools import certificates
from devtools.kafka_broker import LocalKafka, Security
from services.core import db, dead_letter_reading, kafka, replay_markers, topics
from services.core.settings import PROJECT_ROOT, Settings
from services.departments import queue
from services.router import bootstrap as router_bootstrap
from services.router import (
    dead_letter_records,
    dead_letters,
    held_follower,
    lane_check,
    missing_lanes,
)
from services.router.held_store import HeldTickets
from services.router.ticket_ids import issue as issue_ticket_id
from tests import kafka_acls, waits
from tests.conftest import TEST_ROUTING_TABLE, Pipeline
from tests.integration.dead_letters import dead_lettering

# The demo store's customers: the government one goes to public_sector, the business one
# to business_desk (tests/routing.yaml).
CUSTOMERS = {"gov-ministry-1": "public_sector", "org-acme-1": "business_desk"}
DEPARTMENTS = sorted(set(CUSTOMERS.values()))
SERVICES = {"router": kafka_acls.router(), "segmenter": kafka_acls.segmenter(),
            "metrics": kafka_acls.metrics()}
# A router's user that may see the replay markers' topic but not read it (a READ ACL
# missing), its held-tickets reader in groups of a test's own (tests.conftest.unique).
MARKERS_UNREAD = "router-markers-unread"
USERS = {**SERVICES, MARKERS_UNREAD: [
    *(allow for allow in kafka_acls.router()
      if allow != kafka_acls.Allow("topic", topics.DEAD_LETTERS_REPLAYED, "read")),
    kafka_acls.Allow("topic", topics.DEAD_LETTERS_REPLAYED, "describe"),
    kafka_acls.Allow("group", "held-", "read", prefixed=True)]}


def department_user(department: str) -> str:
    return f"dept-{department}"


@dataclass(frozen=True)
class SecureKafka:
    bootstrap: str
    ca: Path
    passwords: dict[str, str]

    def settings(self, user: str, *, password: str | None = None) -> Settings:
        return Settings(
            kafka_bootstrap_servers=self.bootstrap, kafka_security_protocol="SASL_SSL",
            kafka_sasl_mechanism="SCRAM-SHA-512", kafka_sasl_username=user,
            kafka_sasl_password=SecretStr(password or self.passwords[user]),
            kafka_ssl_cafile=self.ca)

    def env(self, user: str) -> dict[str, str]:
        return {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
                "KAFKA_SASL_USERNAME": user, "KAFKA_SASL_PASSWORD": self.passwords[user],
                "KAFKA_SSL_CAFILE": str(self.ca)}


@pytest.fixture(scope="module")
def secure_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureKafka]:
    home = tmp_path_factory.mktemp("secure-kafka")
    certs = certificates.generate(home / "tls")
    users = ["admin", *USERS, *map(department_user, DEPARTMENTS)]
    passwords = {user: secrets.token_urlsafe(16) for user in users}
    broker = LocalKafka(home / "kafka", security=Security(certs, passwords))
    with broker.running() as bootstrap:
        secured = SecureKafka(bootstrap, certs.ca, passwords)
        _topics_made_as_admin(secured, f"sqlite+aiosqlite:///{home / 'store.db'}")
        asyncio.run(kafka_acls.create(secured.settings("admin"), {
            **USERS,
            **{department_user(d): kafka_acls.department(d) for d in DEPARTMENTS}}))
        yield secured


def _topics_made_as_admin(secured: SecureKafka, database_url: str) -> None:
    """`routing topics` as the admin, as docs/kafka-security.md has an operator run it."""
    done = subprocess.run(
        [sys.executable, "-c", "from services.cli import app; app()", "topics"],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120, check=False,
        env={"PATH": "/usr/bin:/bin", "KAFKA_BOOTSTRAP_SERVERS": secured.bootstrap,
             "DATABASE_URL": database_url, "ROUTING_TABLE_FILE": str(TEST_ROUTING_TABLE),
             **secured.env("admin")})
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def secure_pipeline(secure_kafka: SecureKafka,
                    tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    from devtools import demo

    home = tmp_path_factory.mktemp("secure-pipeline")
    database_url = f"sqlite+aiosqlite:///{home / 'store.db'}"
    asyncio.run(demo.seed_if_empty(database_url, count=300))
    running = Pipeline(secure_kafka.bootstrap, database_url, home / "logs")
    for name, service in running.services.items():
        service.env = {**service.env, **secure_kafka.env(name)}  # its own user
    running.start()
    try:
        yield running
    finally:
        running.stop()


async def read_department(secured: SecureKafka, department: str, wanted: set[str],
                          within: float = 60.0) -> set[str]:
    """The wanted ticket ids taken off the department's queue as its own user."""
    found: set[str] = set()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not wanted <= found and loop.time() < deadline:
        async for ticket in queue.read_queue(secured.settings(department_user(department)),
                                             department, max_tickets=50, wait_seconds=2.0):
            found.add(ticket.ticket_id)
    return found & wanted


class TestSecuredPipeline:
    async def test_tickets_reach_each_department_read_with_its_own_user(
            self, secure_kafka: SecureKafka, secure_pipeline: Pipeline) -> None:
        posted: dict[str, set[str]] = {department: set() for department in DEPARTMENTS}
        async with httpx.AsyncClient(timeout=10) as client:
            for customer, department in CUSTOMERS.items():
                for n in range(2):
                    response = await client.post(
                        f"{secure_pipeline.url('router')}/v1/tickets",
                        json={"customer_id": customer, "subject": f"Question {n}",
                              "body": "Hello", "channel": "web", "kind": "question"},
                        headers=secure_pipeline.headers())
                    assert response.status_code == 202, response.text
                    posted[department].add(response.json()["ticket_id"])

        for department, ticket_ids in posted.items():
            assert await read_department(secure_kafka, department, ticket_ids) == ticket_ids

        # Every service did its work with its own rights: no refusal anywhere.
        logs = secure_pipeline.logs()
        assert "AuthorizationFailed" not in logs
        assert "topic not created" not in logs


class TestTransactions:
    async def test_a_stage_writes_in_transactions_under_its_group_prefix(
            self, secure_kafka: SecureKafka) -> None:
        producer = kafka.producer(secure_kafka.settings("segmenter"), client_id="acl-check",
                                  transactional_id="segmenter-acl-check")
        await producer.start()
        try:
            await producer.begin_transaction()
            await producer.send_and_wait(topics.DEAD_LETTERS, b"never committed")
            await producer.abort_transaction()  # invisible to read_committed readers
        finally:
            await producer.stop()

    async def test_a_stage_cannot_take_another_stages_transactional_id(
            self, secure_kafka: SecureKafka) -> None:
        producer = kafka.producer(secure_kafka.settings("segmenter"), client_id="acl-check",
                                  transactional_id="router-acl-check")
        try:
            with pytest.raises(TransactionalIdAuthorizationFailed):
                await producer.start()
        finally:
            await producer.stop()


class TestReplayMarkers:
    async def test_the_routers_first_replay_writes_a_marker_the_metrics_service_reads(
            self, secure_kafka: SecureKafka) -> None:
        """The marker topic made by `routing topics` as admin (the router, allowed no
        CREATE, failed its first replay making it), the router's replay as its own user
        writes a marker the metrics service's reader reads as its own user (the dead
        letters waiting)."""
        router = secure_kafka.settings("router")
        producer = kafka.producer(router, client_id="acl-check")
        await producer.start()
        try:
            dead_letter_id = await dead_lettering.dead_letter(
                producer, topics.INCOMING, key=b"k", value=b"not json",
                headers=dead_lettering.original_headers("t-acl"))
        finally:
            await producer.stop()
        replayed = await dead_letters.replay(
            router, dead_letter_records.Selection(ids=(dead_letter_id,)))
        assert replayed.replayed == [dead_letter_id]
        read: list[dead_letter_reading.Marker] = []
        reader = replay_markers.ReplayMarkers(secure_kafka.settings("metrics"), read.append,
                                              client_id="metrics-replay-markers",
                                              unread="none read", look_seconds=0.2)
        stop = asyncio.Event()
        task = asyncio.create_task(reader.run(stop, after_batch=lambda: None))
        try:
            async with asyncio.timeout(60):
                while dead_letter_id.encode() not in [marker.key for marker in read]:
                    assert not task.done(), task
                    await asyncio.sleep(0.1)
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)


class TestReplayMarkersTheRouterMayNotRead:
    async def test_the_held_tickets_reader_holds_the_dead_letters_after_its_wait(
            self, secure_kafka: SecureKafka, tmp_path: Path,
            caplog: pytest.LogCaptureFixture) -> None:
        """The markers' topic described to the router's user but not fetched (READ
        missing): the reader of the dead letters, its wait for the markers over, warns
        and holds the tickets all the same, the markers still tried meanwhile."""
        ticket_id = issue_ticket_id(datetime.now(UTC))
        producer = kafka.producer(secure_kafka.settings("router"), client_id="acl-held")
        await producer.start()
        try:
            await dead_lettering.dead_letter(
                producer, topics.SEGMENTED, key=b"k", value=b"not json", stage="router",
                headers=dead_lettering.original_headers(ticket_id))
        finally:
            await producer.stop()
        settings = secure_kafka.settings(MARKERS_UNREAD).model_copy(
            update={"database_url": f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"})

        with caplog.at_level(logging.WARNING):
            held = await dead_lettering.held_by_the_reader(settings, ticket_id,
                                                           markers_wait_seconds=1.0)

        assert held.ticket_id == ticket_id
        [warned] = [record for record in caplog.records
                    if record.getMessage() == held_follower.MARKERS_UNREAD]
        assert warned.topic == topics.DEAD_LETTERS_REPLAYED  # type: ignore[attr-defined]
        assert not [record for record in caplog.records
                    if record.name == "services.core.background"]  # neither reader failed


class TestRefused:
    async def test_a_department_cannot_read_another_departments_queue(
            self, secure_kafka: SecureKafka) -> None:
        own, other = DEPARTMENTS
        # Its user may not see the other's lanes: refused before any read.
        with pytest.raises(queue.NoQueue):
            async for _ in queue.read_queue(secure_kafka.settings(department_user(own)),
                                            other, max_tickets=1, wait_seconds=1.0):
                pass

    @pytest.mark.parametrize("topic", [
        topics.EVENTS,  # reports go over HTTP: a write here could forge another's `responded`
        topics.INCOMING,
        topics.department_queue(DEPARTMENTS[0]),
    ])
    async def test_a_department_cannot_write(self, secure_kafka: SecureKafka,
                                             topic: str) -> None:
        department = DEPARTMENTS[0]
        # A plain producer, as an intruder would use: refused by the topic's ACL, not for
        # lack of the idempotent-producer right.
        producer = AIOKafkaProducer(
            **kafka.connection_options(secure_kafka.settings(department_user(department))),
            client_id="intruder", enable_idempotence=False, acks=1)
        await producer.start()
        try:
            with pytest.raises(TopicAuthorizationFailedError):
                await producer.send_and_wait(topic, b"{}")
        finally:
            await producer.stop()

    async def test_a_wrong_password_is_refused(self, secure_kafka: SecureKafka,
                                               caplog: pytest.LogCaptureFixture) -> None:
        admin = kafka.admin(secure_kafka.settings("admin", password="not-the-password"),
                            client_id="wrong-password")
        with caplog.at_level(logging.ERROR, logger="aiokafka"), \
                pytest.raises(KafkaConnectionError):
            await admin.start()
        await admin.close()
        assert "SaslAuthenticationFailed" in caplog.text  # why aiokafka could not connect

    async def test_a_plaintext_client_cannot_connect(self, secure_kafka: SecureKafka) -> None:
        admin = kafka.admin(Settings(kafka_bootstrap_servers=secure_kafka.bootstrap),
                            client_id="plaintext")
        with pytest.raises(KafkaConnectionError):
            await admin.start()
        await admin.close()


class TestLanesTheRouterMayNotMake:
    async def test_are_a_warning_naming_the_department_whose_tickets_are_dead_lettered(
            self, secure_kafka: SecureKafka, tmp_path: Path,
            caplog: pytest.LogCaptureFixture) -> None:
        """A table put in force naming a department no operator made lanes for: the
        router's user may not create them. Its tickets' sends waited on the lanes as on a
        broker down, for good, the tickets behind them on their partitions with them (the
        stage's side: TestADepartmentWhoseLanesCannotBeMade in
        tests/integration/stages/test_router_stage.py)."""
        table_file = tmp_path / "routing.yaml"
        table_file.write_text(TEST_ROUTING_TABLE.read_text().replace(
            "  - {segment: business, department: business_desk",
            "  - {segment: ghostly, department: ghost_desk}\n"
            "  - {segment: business, department: business_desk").replace(
            "departments:\n", "departments:\n  ghost_desk: {}\n"))
        settings = secure_kafka.settings("router").model_copy(
            update={"routing_table_file": table_file})
        lanes = missing_lanes.MissingLanes()
        with caplog.at_level(logging.WARNING, logger=lane_check.__name__):
            await lane_check.ensure_lanes(settings, router_bootstrap.live_table(settings),
                                          lanes)
        assert lanes.departments == {"ghost_desk": tuple(topics.lane_topics("ghost_desk"))}
        [warned] = [record for record in caplog.records if record.name == lane_check.__name__]
        assert warned.getMessage() == (
            "department lanes not made (the router's Kafka user may not create them); tried"
            " again at the next load sample, tickets routed to them dead-lettered meanwhile")
        assert warned.departments == ["ghost_desk"]  # type: ignore[attr-defined]


class TestAGroupTheRouterMayNotRead:
    async def test_the_held_tickets_reader_names_the_acl_once_and_waits(
            self, secure_kafka: SecureKafka, tmp_path: Path,
            caplog: pytest.LogCaptureFixture) -> None:
        """The router's user without READ on the reader's group (an upgrade whose ACL was
        not added): one error naming the group and the ACL, then paused and tried again,
        the task still running (docs/kafka-security.md, "Upgrading")."""
        group = "router-held-not-allowed"
        engine = db.engine(f"sqlite+aiosqlite:///{tmp_path / 'store.db'}")
        with caplog.at_level(logging.WARNING, logger=held_follower.__name__):
            try:
                await waits.waits_out(lambda stop: held_follower.follow(
                    secure_kafka.settings("router"), HeldTickets(db.sessions(engine)), stop,
                    group_id=group), lambda: len(_waited(caplog)))
            finally:
                await engine.dispose()
        errors = [record.getMessage() for record in caplog.records
                  if record.name == held_follower.__name__ and record.levelno == logging.ERROR]
        assert errors == [
            "the broker refuses this user the dead letters' group: add an ACL allowing READ"
            f" on group {group} to the router's Kafka user; until then no dead-lettered"
            " ticket is told held"]
        assert {getattr(record, "error", None) for record in _waited(caplog)} == {
            "GroupAuthorizationFailedError"}


def _waited(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == held_follower.__name__
            and record.getMessage() == held_follower.WAITED_OUT]
