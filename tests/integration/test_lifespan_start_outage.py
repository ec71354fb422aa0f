"""README "On call": the broker lost between a service's check before it serves
(broker_start.ready_blocking) and its app's start (the lifespan: the pipeline's topics
ensured, the router's lanes, the metrics' lag watch) is waited out as a stage's start
waits for it: a WARNING each try naming the service and the brokers, then, once the
broker is back, the service starts and is ready. It exited 3 (uvicorn's start failed:
the topics' 30 tries given up).

Each service is started as it runs (its lifespan, on a real broker and store); the
broker, a test's own, is stopped right after the check and started again while the
lifespan waits. A mistake met there (a password refused) is not waited on: the lifespan
ends at once with the line a start's refusal has, naming the setting (it ended after the
topics' 30 tries, with the Kafka client's 'Unable to bootstrap').

A stop signal while the lifespan waits ends the process at once, exit 0, as it ends the
wait before serving (serve.Server): uvicorn waits for the lifespan's start before it
looks at signals, and the process waited for the broker (or a kill). That test serves a
service's app in a process of its own as serve.service does, the check before serving
left out (the broker is down from the start: the lifespan meets it so); so does the
test of a password refused there, which exits 1 in the refusal's one line, as the check
before serving refuses it (it exited 3, uvicorn's start failed, with a traceback)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from devtools import ports, processes
from devtools.kafka_broker import LocalKafka
from services.core import broker_start, migrate, service_context, topics
from services.core.settings import Settings
from tests import logged, waits
from tests.conftest import TEST_ROUTING_TABLE
from tests.faults.test_broker_outage import own_broker  # noqa: F401
from tests.integration.stages.test_stage_ended import SERVICES
from tests.integration.test_broker_at_start import (  # noqa: F401
    secured_broker,
    stopped_broker,
)
from tests.integration.test_stage_start_outage import refused_password

# A bound on the waits below (the broker's start, the lifespan's), which end sooner.
WITHIN_SECONDS = 120.0


@pytest.mark.parametrize("service", sorted(SERVICES))
async def test_a_broker_lost_after_the_check_is_waited_out_by_the_lifespan(
        own_broker: LocalKafka, tmp_path: Path,  # noqa: F811
        caplog: pytest.LogCaptureFixture, service: str) -> None:
    settings = Settings(kafka_bootstrap_servers=own_broker.bootstrap_servers,
                        database_url=f"sqlite+aiosqlite:///{tmp_path / 'store.db'}",
                        routing_table_file=TEST_ROUTING_TABLE, router_stage=True)
    await migrate.upgrade(settings.database_url)
    await asyncio.to_thread(broker_start.ready_blocking, settings, topics.PIPELINE)
    await asyncio.to_thread(own_broker.stop)  # lost after the check

    app = SERVICES[service](settings)
    context = service_context.of(app)
    exits: list[int] = []
    context.exit = exits.append
    lifespan = app.router.lifespan_context(app)
    brokers = own_broker.bootstrap_servers

    def waiting() -> list[str]:
        return [record.getMessage() for record in caplog.records
                if record.levelno == logging.WARNING and " cannot start: " in
                record.getMessage() and record.name.startswith("services")]

    with caplog.at_level(logging.WARNING):
        starting = asyncio.create_task(lifespan.__aenter__())
        try:
            # Its first try failed (before the mend: the lifespan's start failed).
            await waits.until(lambda: starting.done() or bool(waiting()),
                               within=WITHIN_SECONDS)
            assert not starting.done(), starting.exception()
            assert waiting()[0].startswith(
                f"{service} cannot start: the Kafka broker (KAFKA_BOOTSTRAP_SERVERS) at"
                f" {brokers} is unreachable: waiting for it, next try in 1 s"), waiting()

            await asyncio.to_thread(own_broker.start)
            await waits.until(starting.done, within=WITHIN_SECONDS)
            await starting  # started: no error
            await waits.until(lambda: context.ready() and not context.down(),
                               within=WITHIN_SECONDS)
        finally:
            if not starting.done():
                starting.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await starting
            elif starting.exception() is None:
                await lifespan.__aexit__(None, None, None)
    assert exits == []
    assert not logged.ours(caplog)


async def test_a_password_refused_at_the_lifespan_ends_it_in_one_line(
        secured_broker: tuple[str, Path], tmp_path: Path,  # noqa: F811
        caplog: pytest.LogCaptureFixture) -> None:
    bootstrap, ca = secured_broker
    settings = refused_password(bootstrap, ca, tmp_path)
    await migrate.upgrade(settings.database_url)
    app = SERVICES["segmenter"](settings)
    with caplog.at_level(logging.WARNING), pytest.raises(Exception) as ended:
        async with app.router.lifespan_context(app):
            pass
    assert "SaslAuthenticationFailed" in repr(ended.value)
    said = [record.getMessage() for record in logged.ours(caplog, at=logging.WARNING)]
    assert len(said) == 1, said
    assert said[0].startswith(
        f"segmenter: KAFKA_SASL_USERNAME / KAFKA_SASL_PASSWORD: the Kafka broker at"
        f" {bootstrap} cannot be used: "), said
    assert "not-the-Pa55word" not in said[0]


# A service's process as serve.service makes it, without the check before serving
# (broker_start.ready_blocking): the store migrated, then the app served.
SERVED_WITHOUT_THE_CHECK = """
from services.core import logs, serve, store_start
from services.core.settings import from_environment
from services.metrics.app import NAME, create_app

settings = from_environment()
logs.configure(settings, service=NAME)
store_start.migrated_blocking(settings.database_url)
serve.run(create_app(settings), settings, port=settings.metrics_port)
"""


def served_without_the_check(tmp_path: Path, *, bootstrap: str,
                             extra: dict[str, str] | None = None
                             ) -> tuple[subprocess.Popen[bytes], Path]:
    """The metrics service's process, its log file."""
    service_ports = ports.free_ports_by_name(("router", "segmenter", "metrics"))
    env = processes.service_env(
        bootstrap=bootstrap, database_url=f"sqlite+aiosqlite:///{tmp_path / 'store.db'}",
        ports=service_ports, extra={"LOG_FORMAT": "text", **(extra or {})})
    log_file = tmp_path / "metrics.log"
    with log_file.open("ab") as log:
        process = subprocess.Popen([sys.executable, "-c", SERVED_WITHOUT_THE_CHECK],
                                   env={**os.environ, **env},
                                   cwd=Path(__file__).parents[2], stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    return process, log_file


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_stop_signal_ends_the_lifespan_s_wait(
        stopped_broker: LocalKafka, tmp_path: Path,  # noqa: F811
        stop: signal.Signals) -> None:
    process, log_file = served_without_the_check(
        tmp_path, bootstrap=stopped_broker.bootstrap_servers)
    try:
        deadline = time.monotonic() + WITHIN_SECONDS
        while process.poll() is None and "metrics cannot start: " not in log_file.read_text():
            assert time.monotonic() < deadline, log_file.read_text()
            time.sleep(0.1)
        assert process.poll() is None, log_file.read_text()  # waits, its lifespan starting
        process.send_signal(stop)
        # Before the mend, the lifespan waited on: no exit until the broker came back.
        code = process.wait(WITHIN_SECONDS)
    finally:
        ports.terminate(process, 10)
    logs = log_file.read_text()
    assert code == 0, logs
    assert "stopped while starting" in logs
    assert "Traceback" not in logs and " ERROR " not in logs, logs


def test_a_password_refused_at_the_lifespan_exits_1_in_one_line(
        secured_broker: tuple[str, Path], tmp_path: Path) -> None:  # noqa: F811
    bootstrap, ca = secured_broker
    wrong = refused_password(bootstrap, ca, tmp_path).kafka_sasl_password
    assert wrong is not None
    process, log_file = served_without_the_check(tmp_path, bootstrap=bootstrap, extra={
        "KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_USERNAME": "metrics",
        "KAFKA_SASL_PASSWORD": wrong.get_secret_value(), "KAFKA_SSL_CAFILE": str(ca)})
    try:
        code = process.wait(WITHIN_SECONDS)
    finally:
        ports.terminate(process, 10)
    logs = log_file.read_text()
    # Before the mend: exit 3 (uvicorn's start failed), the lifespan's traceback after.
    assert code == 1, logs
    # The refusal's line, after the Kafka client's own ('Unable connect to ...').
    line = [line for line in logs.splitlines() if " ERROR " in line][-1]
    assert ("metrics: KAFKA_SASL_USERNAME / KAFKA_SASL_PASSWORD: the Kafka broker at"
            f" {bootstrap} cannot be used: [Error 58] SaslAuthenticationFailed:") in line
    assert "Traceback" not in logs and "cannot start: " not in logs, logs
    assert wrong.get_secret_value() not in logs
