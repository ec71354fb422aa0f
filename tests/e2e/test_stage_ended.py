"""README "On call": a stage that ended for good has its process exit with status 70
(EX_SOFTWARE), once shut down as on SIGTERM, for its supervisor (Kubernetes' restartPolicy,
compose's restart policy, bin/run) to start it again.

What ends the stage comes from outside, as it would in production: the metrics service
runs on a secured broker (ACLs enforced, tests/kafka_acls.py) as its own user, and the
admin revokes that user's Read on the stage's consumer group. The group's coordinator then
refuses the member's heartbeat (GROUP_AUTHORIZATION_FAILED), which the Kafka client raises
from the stage's next fetch: nothing in the stage's loop handles it, so the stage ends.
"""

from __future__ import annotations

import asyncio
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from devtools import certificates, ports
from devtools.kafka_broker import LocalKafka, Security
from devtools.processes import ServiceProcess
from services.core import kafka, topics
from services.metrics import app as metrics_app
from tests import kafka_acls
from tests.e2e.test_kafka_security import SecureKafka

USERS = ("admin", "metrics")


@pytest.fixture(scope="module")
def secure_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureKafka]:
    home = tmp_path_factory.mktemp("stage-ended-kafka")
    certs = certificates.generate(home / "tls")
    passwords = {user: secrets.token_urlsafe(16) for user in USERS}
    with LocalKafka(home / "kafka", security=Security(certs, passwords)).running() as bootstrap:
        secured = SecureKafka(bootstrap, certs.ca, passwords)
        asyncio.run(_prepare(secured))
        yield secured


async def _prepare(secured: SecureKafka) -> None:
    admin = secured.settings("admin")
    await kafka.ensure_topics(admin, topics.PIPELINE)  # as an operator makes them
    await kafka_acls.create(admin, {"metrics": kafka_acls.metrics()})


def test_a_stage_that_ended_has_its_process_exit_70(secure_kafka: SecureKafka,
                                                    tmp_path: Path) -> None:
    [port] = ports.free_ports(1)
    metrics = ServiceProcess(
        "metrics", port,
        {**secure_kafka.env("metrics"), "KAFKA_BOOTSTRAP_SERVERS": secure_kafka.bootstrap,
         "METRICS_PORT": str(port),
         "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'store.db'}",
         "LOG_FORMAT": "text"},
        tmp_path / "metrics.log")
    metrics.start()
    try:
        metrics.wait_ready()
        assert httpx.get(f"{metrics.url}/healthz").status_code == 200
        asyncio.run(kafka_acls.revoke(secure_kafka.settings("admin"), "metrics", kafka_acls.Allow(
            "group", topics.METRICS_GROUP, "read")))
        assert metrics.process is not None
        # Bounded, not timed: the heartbeat is refused within seconds.
        status = metrics.process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"metrics still runs; see {metrics.log_file}") from None
    finally:
        metrics.stop()
    log = metrics.log_file.read_text()
    assert status == 70, log
    assert (f"stage {metrics_app.NAME} ended for good: the process exits (status 70) to be"
            " restarted") in log
    assert "GroupAuthorizationFailedError" in log  # what ended it, logged as it ended
    # Shut down as on SIGTERM: the lifespan's shutdown stopped the stages and the store.
    assert log.index("ended for good") < log.index("Application shutdown complete.")
