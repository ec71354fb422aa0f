"""A single-node Apache Kafka broker (KRaft) on loopback, for local runs and tests.

The jars come from Maven Central through `deploy/kafka/pom.xml` into `.cache/kafka/libs`
(fetched once, again when the pom changes). Each broker gets its own folder with its
`server.properties`, formatted storage and log file.

With `metrics=True`, the broker runs the Prometheus JMX exporter as a java agent
(`deploy/kafka/jmx-exporter.yml` says what it exports), answering `/metrics` on loopback
at `metrics_port`; Prometheus scrapes it as the job `kafka`.

With a `Security`, the client listener is SASL_SSL (SCRAM-SHA-512) instead of PLAINTEXT
and every request is checked against ACLs; the controller listener stays PLAINTEXT on
loopback.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree

from devtools import certificates, ports
from services.core.settings import PROJECT_ROOT

POM = PROJECT_ROOT / "deploy" / "kafka" / "pom.xml"
LOG_CONFIG = PROJECT_ROOT / "deploy" / "kafka" / "log4j2.properties"
EXPORTER_CONFIG = PROJECT_ROOT / "deploy" / "kafka" / "jmx-exporter.yml"
LIBS = PROJECT_ROOT / ".cache" / "kafka" / "libs"


class BrokerError(RuntimeError):
    pass


def _pom_property(name: str) -> str:
    found = ElementTree.parse(POM).findtext(
        f"pom:properties/pom:{name}", namespaces={"pom": "http://maven.apache.org/POM/4.0.0"})
    if not found:
        raise BrokerError(f"{POM}: no <{name}> in <properties>")
    return found


def kafka_version() -> str:
    """The broker's version, as the pom names it."""
    return _pom_property("kafka.version")


def exporter_agent(libs: Path) -> Path:
    """The Prometheus JMX exporter's agent jar among the broker's jars."""
    return libs / f"jmx_prometheus_javaagent-{_pom_property('jmx-exporter.version')}.jar"


def _release(version: str, source: Path) -> tuple[int, ...]:
    """`4.0.2` as (4, 0, 2); a suffix such as `-rc1` is not compared."""
    found = re.match(r"(\d+)\.(\d+)\.(\d+)", version)
    if not found:
        raise BrokerError(f"{source}: {version!r} is not a Kafka version such as 4.0.2")
    return tuple(int(part) for part in found.groups())


def ensure_jars() -> Path:
    """Fetch the broker's jars with Maven unless the cached set matches the pom."""
    stamp = LIBS / ".pom-sha256"
    wanted = hashlib.sha256(POM.read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text() == wanted:
        return LIBS
    if LIBS.exists():
        shutil.rmtree(LIBS)
    subprocess.run(
        ["mvn", "-q", "-B", "-f", str(POM), "dependency:copy-dependencies",
         f"-DoutputDirectory={LIBS}", "-DincludeScope=runtime"],
        check=True,
    )
    stamp.write_text(wanted)
    return LIBS


SCRAM = "SCRAM-SHA-512"


@dataclass(frozen=True)
class Security:
    """SASL_SSL with SCRAM users, and the StandardAuthorizer: nothing is allowed to a
    user without an ACL, except to `admin`, a super user."""

    certificates: certificates.BrokerCertificates
    users: Mapping[str, str]
    """SCRAM users, name to password, created when the storage is formatted."""
    admin: str = "admin"
    """One of `users`; the broker also authenticates to itself as this user."""

    def jaas(self, user: str) -> str:
        return (f'org.apache.kafka.common.security.scram.ScramLoginModule required'
                f' username="{user}" password="{self.users[user]}";')

    def properties(self) -> dict[str, str]:
        return {
            "sasl.enabled.mechanisms": SCRAM,
            "sasl.mechanism.inter.broker.protocol": SCRAM,
            f"listener.name.sasl_ssl.{SCRAM.lower()}.sasl.jaas.config": self.jaas(self.admin),
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": str(self.certificates.keystore),
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": str(self.certificates.ca),
            "authorizer.class.name":
                "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            # ANONYMOUS is the broker itself on the PLAINTEXT controller listener.
            "super.users": f"User:{self.admin};User:ANONYMOUS",
            "allow.everyone.if.no.acl.found": "false",
        }


def server_properties(*, data_dir: Path, port: int, controller_port: int,
                      extra: dict[str, str] | None = None,
                      security: Security | None = None) -> str:
    listener = "SASL_SSL" if security else "PLAINTEXT"
    settings = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.bootstrap.servers": f"127.0.0.1:{controller_port}",
        "listeners": f"{listener}://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"{listener}://127.0.0.1:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": listener,
        "listener.security.protocol.map": f"{listener}:{listener},CONTROLLER:PLAINTEXT",
        "log.dirs": str(data_dir),
        # Our code creates every topic with an explicit partition count.
        "auto.create.topics.enable": "false",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "10",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "10",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        **(security.properties() if security else {}),
        **(extra or {}),
    }
    return "".join(f"{key}={value}\n" for key, value in settings.items())


class LocalKafka:
    """One broker process; `start()` returns once it accepts connections."""

    def __init__(self, home: Path, *, port: int | None = None,
                 controller_port: int | None = None, heap: str = "512m",
                 security: Security | None = None, metrics: bool = False,
                 metrics_port: int | None = None) -> None:
        """`metrics` (or a `metrics_port`): run the JMX exporter's agent, on a free port
        unless `metrics_port` names one."""
        self.home = home
        metrics = metrics or metrics_port is not None
        if port is None or controller_port is None or (metrics and metrics_port is None):
            free = ports.free_ports(3)
            port, controller_port = port or free[0], controller_port or free[1]
            metrics_port = (metrics_port or free[2]) if metrics else None
        self.port = port
        self.controller_port = controller_port
        self.metrics_port = metrics_port
        self.heap = heap
        self.security = security
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.home / "broker.log"

    @property
    def metrics_url(self) -> str | None:
        """The exporter's `/metrics`, when the broker runs it."""
        return f"http://127.0.0.1:{self.metrics_port}/metrics" if self.metrics_port else None

    def _java(self, main: str, *args: str, libs: Path | None = None) -> list[str]:
        return ["java", f"-Xmx{self.heap}", f"-Dlog4j2.configurationFile={LOG_CONFIG}",
                "-cp", f"{libs or ensure_jars()}/*", main, *args]

    def broker_command(self, config: Path, libs: Path) -> list[str]:
        """The broker's java command: with the exporter's agent when metrics are wanted,
        listening on loopback only (the storage tool runs without it)."""
        command = self._java("kafka.Kafka", str(config), libs=libs)
        if self.metrics_port is not None:
            command.insert(1, f"-javaagent:{exporter_agent(libs)}"
                              f"=127.0.0.1:{self.metrics_port}:{EXPORTER_CONFIG}")
        return command

    def start(self, timeout: float = 90.0) -> None:
        data_dir = self.home / "data"
        config = self.home / "server.properties"
        self.home.mkdir(parents=True, exist_ok=True)
        config.write_text(server_properties(data_dir=data_dir, port=self.port,
                                            controller_port=self.controller_port,
                                            security=self.security))
        config.chmod(0o600)  # with security, it holds the admin's password
        version = kafka_version()
        stamp = self.home / "kafka-version"
        if (data_dir / "meta.properties").exists():
            # A broker reads storage an older release wrote, not one a newer release did.
            # Storage without the stamp is older than it: Kafka 4.4.0 ran it.
            last = stamp.read_text().strip() if stamp.exists() else "4.4.0"
            if _release(last, stamp) > _release(version, POM):
                raise BrokerError(
                    f"{data_dir} was last run by Kafka {last}"
                    f"{'' if stamp.exists() else ' (no kafka-version stamp)'}, newer than"
                    f" this broker's {version} ({POM}), which cannot read it: delete"
                    f" {self.home} to start afresh")
        else:
            cluster_id = subprocess.run(
                self._java("kafka.tools.StorageTool", "random-uuid"),
                check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
            users = self.security.users.items() if self.security else ()
            scram = [option for name, password in users for option in (
                "--add-scram", f"{SCRAM}=[name={name},password={password}]")]
            subprocess.run(
                self._java("kafka.tools.StorageTool", "format", "--standalone",
                           "-t", cluster_id, "-c", str(config), *scram),
                check=True, capture_output=True)
        stamp.write_text(version)
        with self.log_file.open("ab") as log:
            self._process = subprocess.Popen(
                self.broker_command(config, ensure_jars()), stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, env={**os.environ, "KAFKA_HEAP_OPTS": ""})
        if not ports.wait_for_port(self.port, timeout=timeout):
            self.stop()
            raise BrokerError(f"Kafka did not start within {timeout}s; see {self.log_file}")

    @contextlib.contextmanager
    def running(self) -> Iterator[str]:
        """The broker started for the block; yields its bootstrap servers."""
        self.start()
        try:
            yield self.bootstrap_servers
        finally:
            self.stop()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def kill(self) -> None:
        """SIGKILL the broker (fault tests); `start()` brings it back on the same ports."""
        if self._process is not None:
            self._process.send_signal(signal.SIGKILL)
            self._process.wait()
            self._process = None

    def stop(self, timeout: float = 30.0) -> None:
        if self._process is None:
            return
        ports.terminate(self._process, timeout)
        self._process = None
