"""The local broker refuses storage that a newer Kafka formatted (it could not read it),
naming the folder to delete, before it runs anything."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from devtools.kafka_broker import BrokerError, LocalKafka, kafka_version


def test_storage_formatted_by_a_newer_kafka_is_refused_with_the_folder_to_delete(
        tmp_path: Path) -> None:
    home = tmp_path / "kafka"
    (home / "data").mkdir(parents=True)
    (home / "data" / "meta.properties").write_text("version=1\n")
    major, _, rest = kafka_version().partition(".")
    (home / "kafka-version").write_text(f"{int(major) + 1}.{rest}\n")

    with pytest.raises(BrokerError, match=f"delete {re.escape(str(home))}"):
        LocalKafka(home, port=1, controller_port=2).start()

