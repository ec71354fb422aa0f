"""A service started while its Kafka broker is down waits for it, then starts; a mistake
in the Kafka settings ends the start at once, exit 1, in one line naming the setting; a
command fails at once in one line (services/core/broker_start.py). The metrics service
stands for the three: they start through the same door (tests/service_starts.py)."""

from __future__ import annotations

import logging
import secrets
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools import certificates, ports, processes
from devtools.kafka_broker import LocalKafka, Security
from services.core import broker_start
from services.core.settings import PROJECT_ROOT, Settings
from services.router import bootstrap as router_bootstrap
from services.router import lane_check, missing_lanes
from tests.service_starts import exit_code_within, logged_within, metrics_service

# Bounds on waits that end far sooner unless the start is broken.
WAITING_SECONDS = 30.0
READY_SECONDS = 120.0
WAITING = "is unreachable: waiting for it"


def sqlite_store(home: Path) -> str:
    return f"sqlite+aiosqlite:///{home / 'store.db'}"


def error_lines(service: processes.ServiceProcess) -> list[str]:
    return [line for line in service.log_file.read_text().splitlines() if " ERROR " in line]


@pytest.fixture
def stopped_broker(tmp_path: Path) -> Iterator[LocalKafka]:
    """A broker on free ports, not started yet."""
    port, controller_port = ports.free_ports(2)
    broker = LocalKafka(tmp_path / "kafka", port=port, controller_port=controller_port)
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="module")
def secured_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A SASL_SSL broker (its bootstrap servers, its CA) with one user, `metrics`."""
    home = tmp_path_factory.mktemp("secured-kafka")
    made = certificates.generate(home / "tls")
    users = {"admin": secrets.token_urlsafe(16), "metrics": secrets.token_urlsafe(16)}
    with LocalKafka(home / "kafka", security=Security(made, users)).running() as bootstrap:
        yield bootstrap, made.ca


class TestAServiceWhileTheBrokerIsDown:
    def test_it_waits_for_the_broker_then_starts(
            self, tmp_path: Path, stopped_broker: LocalKafka,
            started_services: list[processes.ServiceProcess]) -> None:
        service = metrics_service(tmp_path, bootstrap=stopped_broker.bootstrap_servers,
                                  database_url=sqlite_store(tmp_path))
        service.start()
        started_services.append(service)
        assert logged_within(service, WAITING, WAITING_SECONDS), service.log_file.read_text()
        assert logged_within(service, "next try in 2 s", WAITING_SECONDS)  # tried again
        assert service.process is not None and service.process.poll() is None
        logs = service.log_file.read_text()
        assert (f"WARNING the Kafka broker (KAFKA_BOOTSTRAP_SERVERS) at"
                f" 127.0.0.1:{stopped_broker.port} {WAITING}, next try in 1 s"
                " (ConnectionRefusedError: ") in logs
        assert "Traceback" not in logs

        stopped_broker.start()
        service.wait_ready(READY_SECONDS)  # its topics made, then started as usual
        assert "Traceback" not in service.log_file.read_text()

    @pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
    def test_a_stop_signal_ends_the_wait_as_it_stops_a_service(
            self, tmp_path: Path, started_services: list[processes.ServiceProcess],
            stop: signal.Signals) -> None:
        service = metrics_service(tmp_path, bootstrap=f"127.0.0.1:{ports.free_port()}",
                                  database_url=sqlite_store(tmp_path))
        service.start()
        started_services.append(service)
        assert logged_within(service, WAITING, WAITING_SECONDS), service.log_file.read_text()
        service.signal(stop)
        assert exit_code_within(service, WAITING_SECONDS) == 0
        logs = service.log_file.read_text()
        assert "stopped while waiting for the Kafka broker" in logs
        assert "Traceback" not in logs


class TestAListenerOfAnotherSecurityProtocol:
    """A TLS listener spoken to in plain text closes the connection: said as a server
    that took the connection and gave no Kafka answer, naming KAFKA_SECURITY_PROTOCOL,
    where it was said unreachable."""

    def test_a_start_waits_saying_so(
            self, tmp_path: Path, secured_broker: tuple[str, Path],
            started_services: list[processes.ServiceProcess]) -> None:
        bootstrap, _ = secured_broker
        service = metrics_service(tmp_path, bootstrap=bootstrap,
                                  database_url=sqlite_store(tmp_path))
        service.start()
        started_services.append(service)
        said = (f"the Kafka broker (KAFKA_BOOTSTRAP_SERVERS) at {bootstrap} gives no Kafka"
                " answer: waiting for it, next try in 1 s (NoKafkaAnswer: "
                f"{bootstrap} took the connection, then gave no Kafka answer (")
        assert logged_within(service, said, WAITING_SECONDS), service.log_file.read_text()
        logs = service.log_file.read_text()
        assert ("not a Kafka listener, or one of another security protocol than"
                " KAFKA_SECURITY_PROTOCOL=PLAINTEXT)") in logs
        assert WAITING not in logs and "Traceback" not in logs
        service.signal(signal.SIGTERM)
        assert exit_code_within(service, WAITING_SECONDS) == 0

    @pytest.mark.parametrize(("protocol", "said"), [
        ("PLAINTEXT", "took the connection, then gave no Kafka answer (KafkaConnectionError:"
                      " Connection at {bootstrap} closed): not a Kafka listener, or one of"
                      " another security protocol than KAFKA_SECURITY_PROTOCOL=PLAINTEXT"),
        # TLS without SASL: the versions are answered before authentication.
        ("SSL", "answered the handshake, then not its first request (KafkaConnectionError:"
                " Connection at {bootstrap} closed): a listener of another security protocol"
                " than KAFKA_SECURITY_PROTOCOL=SSL (one that wants SASL?)"),
    ])
    def test_a_command_ends_in_one_line_saying_so(
            self, tmp_path: Path, secured_broker: tuple[str, Path], protocol: str,
            said: str) -> None:
        bootstrap, ca = secured_broker
        tls = {"KAFKA_SSL_CAFILE": str(ca)} if protocol == "SSL" else {}
        done = subprocess.run(
            [sys.executable, "-c", "from services.cli import app; app()", "topics"],
            cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=WAITING_SECONDS,
            check=False, env={"PATH": "/usr/bin:/bin", "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
                              "KAFKA_SECURITY_PROTOCOL": protocol, **tls,
                              "DATABASE_URL": sqlite_store(tmp_path)})
        assert (done.returncode, done.stdout) == (1, "")
        [line] = done.stderr.splitlines()
        assert line == (f"KAFKA_BOOTSTRAP_SERVERS / KAFKA_SECURITY_PROTOCOL: the Kafka broker"
                        f" at {bootstrap} gives no Kafka answer: NoKafkaAnswer: {bootstrap} "
                        + said.format(bootstrap=bootstrap) + " (correct either, and run again)")


class TestAMistakeInTheKafkaSettings:
    def test_a_password_refused_exits_1_at_once_naming_the_settings(
            self, tmp_path: Path, secured_broker: tuple[str, Path],
            started_services: list[processes.ServiceProcess]) -> None:
        bootstrap, ca = secured_broker
        wrong = "not-the-Pa55word"
        service = metrics_service(tmp_path, bootstrap=bootstrap,
                                  database_url=sqlite_store(tmp_path), extra={
                                      "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                                      "KAFKA_SASL_USERNAME": "metrics",
                                      "KAFKA_SASL_PASSWORD": wrong,
                                      "KAFKA_SSL_CAFILE": str(ca)})
        service.start()
        started_services.append(service)
        assert exit_code_within(service, WAITING_SECONDS) == 1
        logs = service.log_file.read_text()
        [line] = error_lines(service)
        assert ("KAFKA_SASL_USERNAME / KAFKA_SASL_PASSWORD: the Kafka broker at"
                f" {bootstrap} cannot be used: [Error 58] SaslAuthenticationFailed:") in line
        assert WAITING not in logs and "Traceback" not in logs
        assert wrong not in logs

    def test_a_ca_file_that_is_no_certificate_exits_1_at_once_naming_it(
            self, tmp_path: Path, started_services: list[processes.ServiceProcess]) -> None:
        ca = tmp_path / "ca.pem"
        ca.write_text("not a certificate\n")
        # No broker: the start ends before it would reach one.
        service = metrics_service(tmp_path, bootstrap=f"127.0.0.1:{ports.free_port()}",
                                  database_url=sqlite_store(tmp_path), extra={
                                      "KAFKA_SECURITY_PROTOCOL": "SSL",
                                      "KAFKA_SSL_CAFILE": str(ca)})
        service.start()
        started_services.append(service)
        assert exit_code_within(service, WAITING_SECONDS) == 1
        [line] = error_lines(service)
        assert "KAFKA_SSL_CAFILE: the Kafka broker at 127.0.0.1:" in line
        assert f"{ca} cannot be used as a TLS file" in line
        logs = service.log_file.read_text()
        assert WAITING not in logs and "Traceback" not in logs


@pytest.fixture(scope="module")
def fresh_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One broker without the pipeline's topics: KAFKA_REPLICATION_FACTOR=2 is more than
    it has, as while a cluster's brokers register."""
    home = tmp_path_factory.mktemp("fresh-kafka")
    port, controller_port = ports.free_ports(2)
    with LocalKafka(home / "kafka", port=port, controller_port=controller_port
                    ).running() as bootstrap:
        yield bootstrap


class TestTopicsTheBrokersDoNotMake:
    def test_a_start_waits_for_them_rather_than_serving_without(
            self, tmp_path: Path, fresh_broker: str,
            started_services: list[processes.ServiceProcess]) -> None:
        """It logged "topic not created" and served, its stages then waiting on topics
        that were never made."""
        service = metrics_service(tmp_path, bootstrap=fresh_broker,
                                  database_url=sqlite_store(tmp_path),
                                  extra={"KAFKA_REPLICATION_FACTOR": "2"})
        service.start()
        started_services.append(service)
        not_made = (f"WARNING the Kafka broker (KAFKA_BOOTSTRAP_SERVERS) at {fresh_broker}"
                    " has not made the topics (KAFKA_REPLICATION_FACTOR more than the"
                    " brokers up?): waiting for it, next try in 1 s (TopicsNotMade: the"
                    " brokers did not make ")
        assert logged_within(service, not_made, READY_SECONDS), service.log_file.read_text()
        assert "(InvalidReplicationFactorError)" in service.log_file.read_text()
        assert service.process is not None and service.process.poll() is None
        service.signal(signal.SIGTERM)
        assert exit_code_within(service, WAITING_SECONDS) == 0
        logs = service.log_file.read_text()
        assert "Traceback" not in logs and "topic not created" not in logs

    def test_routing_topics_ends_at_once_in_one_line(self, tmp_path: Path,
                                                      fresh_broker: str) -> None:
        done = subprocess.run(
            [sys.executable, "-c", "from services.cli import app; app()", "topics"],
            cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=WAITING_SECONDS,
            check=False, env={"PATH": "/usr/bin:/bin", "KAFKA_BOOTSTRAP_SERVERS": fresh_broker,
                              "KAFKA_REPLICATION_FACTOR": "2",
                              "DATABASE_URL": sqlite_store(tmp_path)})
        assert done.returncode == 1
        assert done.stdout == ""
        [line] = done.stderr.splitlines()
        assert line.startswith(f"KAFKA_REPLICATION_FACTOR: the Kafka broker at {fresh_broker}"
                               " has not made the topics: TopicsNotMade: the brokers did not"
                               " make tickets.incoming (InvalidReplicationFactorError); ")
        assert line.endswith("(fewer brokers up than KAFKA_REPLICATION_FACTOR? run again once"
                             " they are)")


class TestLanesTheBrokersDoNotMake:
    async def test_are_a_warning_the_router_goes_on_from(
            self, fresh_broker: str, caplog: pytest.LogCaptureFixture) -> None:
        """The router's lanes for the table in force (at its start, after a reload, at
        each load sample) raised TopicsNotMade after 30 tries: the start failed, and the
        load sampling stopped before it sampled."""
        settings = Settings(kafka_bootstrap_servers=fresh_broker, kafka_replication_factor=2)
        with caplog.at_level(logging.WARNING, logger=lane_check.__name__):
            await lane_check.ensure_lanes(settings, router_bootstrap.live_table(settings),
                                          missing_lanes.MissingLanes())
        [warned] = [record for record in caplog.records if record.name == lane_check.__name__]
        assert warned.getMessage() == ("department lanes not made; tried again at the next"
                                       " load sample, tickets routed to them dead-lettered"
                                       " meanwhile")
        assert "InvalidReplicationFactorError" in warned.error  # type: ignore[attr-defined]
        assert warned.departments == sorted(  # type: ignore[attr-defined]
            set(router_bootstrap.live_table(settings).current.departments))


class TestACommand:
    async def test_a_broker_that_answers_is_reached(self, kafka_bootstrap: str) -> None:
        await broker_start.reached(Settings(kafka_bootstrap_servers=kafka_bootstrap))

    def test_it_fails_at_once_in_one_line_while_the_broker_is_down(
            self, tmp_path: Path) -> None:
        """`routing topics` tried for 30 s, then printed aiokafka's traceback."""
        port = ports.free_port()
        done = subprocess.run(
            [sys.executable, "-c", "from services.cli import app; app()", "topics"],
            cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=WAITING_SECONDS,
            check=False, env={"PATH": "/usr/bin:/bin",
                              "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{port}",
                              "DATABASE_URL": sqlite_store(tmp_path)})
        assert done.returncode == 1
        assert done.stdout == ""
        [line] = done.stderr.splitlines()
        assert line.startswith(
            f"KAFKA_BOOTSTRAP_SERVERS: the Kafka broker at 127.0.0.1:{port} is unreachable:")
