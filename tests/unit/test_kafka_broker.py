"""The local broker refuses storage that a newer Kafka formatted (it could not read it),
naming the folder to delete, before it runs anything; asked for metrics, it runs the JMX
exporter's agent from its jars, on loopback only."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from devtools.kafka_broker import (
    EXPORTER_CONFIG,
    POM,
    BrokerError,
    LocalKafka,
    kafka_version,
)


def test_storage_formatted_by_a_newer_kafka_is_refused_with_the_folder_to_delete(
        tmp_path: Path) -> None:
    home = tmp_path / "kafka"
    (home / "data").mkdir(parents=True)
    (home / "data" / "meta.properties").write_text("version=1\n")
    major, _, rest = kafka_version().partition(".")
    (home / "kafka-version").write_text(f"{int(major) + 1}.{rest}\n")

    with pytest.raises(BrokerError, match=f"delete {re.escape(str(home))}"):
        LocalKafka(home, port=1, controller_port=2).start()



class TestExporterAgent:
    def test_the_broker_runs_the_agent_the_pom_names_on_loopback_with_our_config(
            self, tmp_path: Path) -> None:
        libs = tmp_path / "libs"
        broker = LocalKafka(tmp_path, port=1, controller_port=2, metrics_port=3)
        command = broker.broker_command(tmp_path / "server.properties", libs)
        [agent] = [option for option in command if option.startswith("-javaagent:")]
        jar, _, arguments = agent.removeprefix("-javaagent:").partition("=")
        version = re.search(r"<jmx-exporter.version>(.+)</jmx-exporter.version>",
                            POM.read_text(encoding="utf-8"))
        assert version
        assert jar == str(libs / f"jmx_prometheus_javaagent-{version.group(1)}.jar")
        assert arguments == f"127.0.0.1:3:{EXPORTER_CONFIG}"
        assert command.index(agent) < command.index("kafka.Kafka")  # a JVM option
        assert broker.metrics_url == "http://127.0.0.1:3/metrics"

    def test_without_metrics_the_broker_runs_no_agent(self, tmp_path: Path) -> None:
        broker = LocalKafka(tmp_path, port=1, controller_port=2)
        command = broker.broker_command(tmp_path / "server.properties", tmp_path / "libs")
        assert not [option for option in command if option.startswith("-javaagent:")]
        assert broker.metrics_url is None
