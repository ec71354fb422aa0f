"""`routing topics` on a real broker and a real store (SQLite and PostgreSQL): it makes the
department lanes of the routing table in force, the store's version (an upload through
the router's API) or the file before any was stored, and names which; a store it cannot
reach ends it in one line (exit 1), a version it cannot read names the version (exit 2).
It makes the replay markers' topic too, compacted, as the router's first replay would
where it may create topics."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from devtools import ports
from devtools.kafka_broker import LocalKafka
from services.core import config_store, kafka, topics
from services.core.settings import PROJECT_ROOT, Settings
from services.router import priority, table_file
from tests.conftest import TEST_ROUTING_TABLE, unique

COMMAND_SECONDS = 120.0  # bounds a command that ends far sooner unless it hangs
TABLE = """version: added-{department}
fallback_department: customer_care
routes:
  - {{segment: government, department: public_sector}}
  - {{segment: business, department: {department}}}
"""


def routing_topics(bootstrap: str, database_url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from services.cli import app; app()", "topics"],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=COMMAND_SECONDS,
        check=False, env={"PATH": "/usr/bin:/bin", "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
                          "DATABASE_URL": database_url,
                          "ROUTING_TABLE_FILE": str(TEST_ROUTING_TABLE)})


async def put_in_force(sessions: async_sessionmaker[AsyncSession], text: str
                       ) -> config_store.ConfigVersion:
    """`text` in force in the store, as an upload through the router's API keeps it."""
    version, _changed = await config_store.ConfigVersions(
        sessions, config_store.ROUTING_TABLE).put_in_force(
        config_store.Candidate(text=text, version="uploaded", author="tests"))
    return version


async def topics_on(bootstrap: str) -> set[str]:
    client = kafka.admin(Settings(kafka_bootstrap_servers=bootstrap), client_id="test-topics")
    await client.start()
    try:
        return set(await client.list_topics())
    finally:
        await client.close()


class TestTheLanesOfTheTableInForce:
    async def test_a_department_added_by_a_stored_version_gets_its_lanes(
            self, kafka_bootstrap: str, database_url: str,
            sessions: async_sessionmaker[AsyncSession]) -> None:
        """They were the file's only: the department an upload added had none."""
        department = unique("added")
        text = TABLE.format(department=department)
        version = await put_in_force(sessions, text)

        done = routing_topics(kafka_bootstrap, database_url)

        assert done.returncode == 0, done.stderr
        said, *listed = done.stdout.splitlines()
        parsed = table_file.parse(text, "uploaded")
        assert said == (f"routing table in force: {TEST_ROUTING_TABLE.name} version"
                        f" #{version.version_id} (version {parsed.version})")
        lanes = priority.lane_topics(department)
        assert set(lanes) <= set(listed)
        assert set(lanes) <= await topics_on(kafka_bootstrap)
        # The file's departments the version dropped are not made for it.
        assert not set(priority.lane_topics("sales_support")) & set(listed)

    async def test_before_any_version_is_stored_the_files_are_made(
            self, kafka_bootstrap: str, database_url: str) -> None:
        done = routing_topics(kafka_bootstrap, database_url)

        assert done.returncode == 0, done.stderr
        said, *listed = done.stdout.splitlines()
        table = table_file.load(TEST_ROUTING_TABLE)
        assert said == f"routing table in force: {TEST_ROUTING_TABLE} (version {table.version})"
        lanes = [topic for department in table.departments
                 for topic in priority.lane_topics(department)]
        assert set(lanes) <= set(listed)
        assert set(lanes) <= await topics_on(kafka_bootstrap)

    async def test_a_stored_version_it_cannot_read_is_named_exit_2(
            self, kafka_bootstrap: str, database_url: str,
            sessions: async_sessionmaker[AsyncSession]) -> None:
        version = await put_in_force(sessions, "version: unread\nroutes: not a list\n")

        done = routing_topics(kafka_bootstrap, database_url)

        assert (done.returncode, done.stdout) == (2, "")
        assert done.stderr.startswith(
            f"{TEST_ROUTING_TABLE.name} version #{version.version_id}"), done.stderr
        assert "Traceback" not in done.stderr


class TestAStoreItCannotReach:
    def test_ends_it_in_one_line_exit_1(self, kafka_bootstrap: str) -> None:
        port = ports.free_port()
        done = routing_topics(kafka_bootstrap,
                              f"postgresql+asyncpg://routing@127.0.0.1:{port}/routing")

        assert (done.returncode, done.stdout) == (1, "")
        [line] = done.stderr.splitlines()
        assert line.startswith(f"DATABASE_URL: the store at 127.0.0.1:{port} is unreachable:")


@pytest.fixture
def broker_without_markers(tmp_path: Path) -> Iterator[str]:
    """A broker of its own: on the shared one a replay may have made the markers' topic."""
    with LocalKafka(tmp_path / "kafka").running() as bootstrap:
        yield bootstrap


class TestTheReplayMarkersTopic:
    async def test_is_made_compacted(self, broker_without_markers: str,
                                     sqlite_url: str) -> None:
        """The router makes it at its first replay: where ACLs let it make no topic, that
        replay failed, and `routing topics` did not make it either."""
        done = routing_topics(broker_without_markers, sqlite_url)

        assert done.returncode == 0, done.stderr
        assert topics.DEAD_LETTERS_REPLAYED in done.stdout.splitlines()
        client = kafka.admin(Settings(kafka_bootstrap_servers=broker_without_markers),
                             client_id="test-topic-configs")
        await client.start()
        try:
            [response] = await client.describe_configs(
                [ConfigResource(ConfigResourceType.TOPIC, topics.DEAD_LETTERS_REPLAYED)])
        finally:
            await client.close()
        [(_code, _message, _type, _name, entries)] = response.resources
        assert {name: value for name, value, *_ in entries}["cleanup.policy"] == "compact"
