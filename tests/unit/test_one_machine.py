"""The pipeline on one machine (`bin/run`, the benchmark's project): one partition a
topic, unless the caller chose a count."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from devtools import processes
from services.core.settings import Settings

PORTS = {"router": 1, "segmenter": 2, "metrics": 3}


def test_one_machine_topics_get_one_partition_by_default(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KAFKA_TOPIC_PARTITIONS", raising=False)
    assert Settings().kafka_topic_partitions == 3  # compose's (Helm's values say 6)
    settings = processes.one_machine(Settings())
    assert settings.kafka_topic_partitions == processes.ONE_MACHINE_TOPIC_PARTITIONS == 1


def test_a_count_the_caller_chose_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_TOPIC_PARTITIONS", "4")
    assert processes.one_machine(Settings()).kafka_topic_partitions == 4
    monkeypatch.delenv("KAFKA_TOPIC_PARTITIONS")
    assert processes.one_machine(Settings(kafka_topic_partitions=3)).kafka_topic_partitions == 3


def test_the_services_are_given_the_count() -> None:
    env = processes.service_env(bootstrap="b", database_url="d", ports=PORTS,
                                topic_partitions=1)
    assert env["KAFKA_TOPIC_PARTITIONS"] == "1"
    assert "KAFKA_TOPIC_PARTITIONS" not in processes.service_env(
        bootstrap="b", database_url="d", ports=PORTS)


class StartedService:
    """Stands in for a service process: ends as soon as it is watched."""

    name = "segmenter"
    url = "http://127.0.0.1:1"
    log_file = "segmenter.log"

    class process:  # a Popen: the one method the runner reads
        @staticmethod
        def poll() -> int:
            return 0

    def start(self) -> None:
        pass

    def wait_ready(self) -> None:
        pass

    def stop(self) -> None:
        pass


def test_bin_run_starts_the_services_with_one_partition_a_topic(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from devtools import run as dev_run

    given: list[dict[str, str]] = []

    def pipeline(env: dict[str, str], *_: object, **__: object) -> list[StartedService]:
        given.append(env)
        return [StartedService()]

    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")  # no broker started
    monkeypatch.delenv("KAFKA_TOPIC_PARTITIONS", raising=False)
    monkeypatch.setattr(dev_run.processes, "pipeline_processes", pipeline)
    monkeypatch.setattr(dev_run.signal, "signal", lambda *_: None)
    result = CliRunner().invoke(dev_run.app, ["up", "--no-demo", "--data-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert [env["KAFKA_TOPIC_PARTITIONS"] for env in given] == ["1"]


def test_the_store_lives_in_the_data_dir(monkeypatch: pytest.MonkeyPatch,
                                         tmp_path: Path) -> None:
    """`bin/run --data-dir DIR`: the broker, the logs and the SQLite store in DIR."""
    monkeypatch.delenv("DATABASE_URL", raising=False)
    settings = processes.one_machine(Settings(), tmp_path / "elsewhere")
    assert settings.database_url == (
        f"sqlite+aiosqlite:///{(tmp_path / 'elsewhere').resolve() / 'routing.db'}")


def test_a_database_the_caller_chose_wins(monkeypatch: pytest.MonkeyPatch,
                                          tmp_path: Path) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql+asyncpg://u:p@db/routing")
    settings = processes.one_machine(Settings(), tmp_path)
    assert settings.database_url == "postgresql+asyncpg://u:p@db/routing"


def test_the_demo_credentials_live_in_the_data_dir(monkeypatch: pytest.MonkeyPatch,
                                                   tmp_path: Path) -> None:
    """`bin/run --data-dir DIR` writes the demo credentials to DIR/credentials.env (README's
    walk-through sources it from there)."""
    from devtools import run as dev_run

    written: list[Path] = []

    def seed(_settings: object, credentials: Path) -> list[str]:
        written.append(credentials)
        return []

    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")  # no broker started
    monkeypatch.setattr(dev_run.demo_seed, "seed", seed)
    monkeypatch.setattr(dev_run.processes, "pipeline_processes",
                        lambda *_, **__: [StartedService()])
    monkeypatch.setattr(dev_run.signal, "signal", lambda *_: None)
    result = CliRunner().invoke(dev_run.app, ["up", "--data-dir", str(tmp_path / "d")])
    assert result.exit_code == 0, result.output
    assert written == [tmp_path / "d" / "credentials.env"]


class TestAServiceThatExits:
    """bin/run stops everything when a service's process ends by itself, saying which one
    and with what status: 70, a stage that ended for good (README "On call")."""

    def run_until_exit(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                       status: int) -> str:
        from devtools import run as dev_run

        class Exited(StartedService):
            class process:
                @staticmethod
                def poll() -> int:
                    return status

        monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")  # no broker started
        monkeypatch.setattr(dev_run.processes, "pipeline_processes",
                            lambda *_args, **_kwargs: [Exited()])
        monkeypatch.setattr(dev_run.signal, "signal", lambda *_: None)
        result = CliRunner().invoke(dev_run.app, ["up", "--no-demo", "--data-dir",
                                                  str(tmp_path)])
        assert result.exit_code == 0, result.output
        return result.output

    def test_a_stage_that_ended_is_said(self, monkeypatch: pytest.MonkeyPatch,
                                        tmp_path: Path) -> None:
        output = self.run_until_exit(monkeypatch, tmp_path, 70)
        assert ("segmenter exited with status 70 (a stage ended for good); see"
                " segmenter.log") in output
        assert output.rstrip().endswith("stopped")

    def test_any_other_status_is_said(self, monkeypatch: pytest.MonkeyPatch,
                                      tmp_path: Path) -> None:
        output = self.run_until_exit(monkeypatch, tmp_path, 1)
        assert "segmenter exited with status 1; see segmenter.log" in output

    def test_a_signal_is_named(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        output = self.run_until_exit(monkeypatch, tmp_path, -9)
        assert "segmenter was ended by SIGKILL; see segmenter.log" in output
