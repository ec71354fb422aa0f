"""README "On call": a stage whose start meets the broker unreachable (stopped, not up
yet) waits for it, as a service's start does and as its batches do once running: a
WARNING each try, `/readyz` 503 naming the stage, `/healthz` 200 (alive, waiting), no
exit asked; once the broker is back, the stage starts and processes its records. It has
not ended for good: no CRITICAL line, no exit status 70 (it was, where the stage's first
client met the broker away).

The stage is wired as the services wire theirs (its `on_ended` the context's
`stage_ended`; `/healthz` and `/readyz` the shared edges', `http.install`), on a broker of
the test's own, stopped before the stage starts and started again while it waits. Both
ways of delivering: at least once, the stage's producer is started first; exactly once,
its consumer.

A mistake met there is no outage, though the Kafka client says it as one ('Unable to
bootstrap' for a password refused): the stage reaches the broker as a service's start
does, which says the mistake, and ends for good (its process restarted, whose start
then exits 1 naming the setting)."""

from __future__ import annotations

import asyncio
import logging
import secrets
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from fastapi import FastAPI
from prometheus_client import REGISTRY

from devtools import certificates, ports
from devtools.kafka_broker import LocalKafka, Security
from services.core import http, kafka, service_context
from services.core.settings import Settings
from services.core.stage import StageRunner
from tests import logged, waits
from tests.conftest import unique
from tests.faults.test_broker_outage import own_broker  # noqa: F401
from tests.integration.stages.stage_records import Received, publish_received
from tests.integration.test_broker_at_start import secured_broker  # noqa: F401

# A bound on the waits below (the broker's start, the group's join), which end sooner.
WITHIN_SECONDS = 120.0


def waiting_for_outage(stage: str) -> float | None:
    return REGISTRY.get_sample_value("routing_stage_waiting_for_outage", {"stage": stage})


def refused_password(bootstrap: str, ca: Path, tmp_path: Path) -> Settings:
    """The settings of a SASL_SSL broker's user `metrics`, with a password it refuses."""
    return Settings(kafka_bootstrap_servers=bootstrap, kafka_security_protocol="SASL_SSL",
                    kafka_sasl_username="metrics", kafka_sasl_password="not-the-Pa55word",
                    kafka_ssl_cafile=ca,
                    database_url=f"sqlite+aiosqlite:///{tmp_path / 'store.db'}")


def stage_of(settings: Settings) -> tuple[service_context.ServiceContext, StageRunner,
                                             list[int]]:
    """A stage wired as the services wire theirs (its `on_ended` the context's
    `stage_ended`), not started; the exit statuses its context was asked for."""
    context = service_context.install(FastAPI(), settings)
    exits: list[int] = []
    context.exit = exits.append
    name = unique("stage-start")
    stage = context.stage = StageRunner(
        settings, name=name, source_topic=unique("stage-start"), group_id=name,
        transform=Received(), on_ended=context.stage_ended)
    return context, stage, exits


@pytest.mark.parametrize("delivery", ["at_least_once", "exactly_once"])
async def test_a_stage_started_while_the_broker_is_down_waits_for_it(
        own_broker: LocalKafka, tmp_path: Path,  # noqa: F811
        caplog: pytest.LogCaptureFixture, delivery: str) -> None:
    settings = Settings(kafka_bootstrap_servers=own_broker.bootstrap_servers,
                        kafka_topic_partitions=3, delivery=delivery,
                        database_url=f"sqlite+aiosqlite:///{tmp_path / 'store.db'}")
    source, name = unique("stage-start"), unique("stage-start")
    await kafka.ensure_topics(settings, [source])  # as the service's start made them
    await asyncio.to_thread(own_broker.stop)

    app = FastAPI()
    context = service_context.install(app, settings)
    http.install(app, ready=context.ready, down=context.down, ended=context.ended)
    exits: list[int] = []
    context.exit = exits.append
    received = Received()
    stage = context.stage = StageRunner(
        settings, name=name, source_topic=source, group_id=name, transform=received,
        on_ended=context.stage_ended)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://s")
    with caplog.at_level(logging.WARNING):
        await stage.start()
        try:
            def waiting() -> list[str]:
                return [record.getMessage() for record in caplog.records
                        if record.name == "services.core.stage"]

            # Its first try has failed (before the mend: the stage ended for good).
            await waits.until(lambda: stage.ended or bool(waiting()), within=WITHIN_SECONDS)
            assert (exits, stage.ended) == ([], False)
            assert waiting()[0].startswith(
                f"stage {name} cannot start: the Kafka broker (KAFKA_BOOTSTRAP_SERVERS) at"
                f" {own_broker.bootstrap_servers} is unreachable: waiting for it, next try"
                " in 1 s (ConnectionRefusedError: [Errno 111] Connect call failed"), waiting()
            ready = await client.get("/readyz")
            assert (ready.status_code, ready.json()) == (
                503, {"status": "not_ready", "down": [name]})
            alive = await client.get("/healthz")
            assert (alive.status_code, alive.json()) == (200, {"status": "ok"})
            assert waiting_for_outage(name) == 1

            await asyncio.to_thread(own_broker.start)
            producer = AIOKafkaProducer(bootstrap_servers=own_broker.bootstrap_servers)
            await producer.start()
            try:
                ticket = unique("t")
                await publish_received(producer, ticket, "c-1", topic=source)
            finally:
                await producer.stop()
            await waits.until(lambda: ticket in received.tickets, within=WITHIN_SECONDS)
            await waits.until(lambda: stage.running, within=WITHIN_SECONDS)
            ready = await client.get("/readyz")
            assert (ready.status_code, ready.json()) == (200, {"status": "ready"})
            assert waiting_for_outage(name) == 0
        finally:
            await stage.stop()
            await client.aclose()
    assert not stage.ended
    assert exits == []
    assert not logged.ours(caplog)


async def test_a_password_refused_at_a_stages_start_ends_it(
        secured_broker: tuple[str, Path], tmp_path: Path,  # noqa: F811
        caplog: pytest.LogCaptureFixture) -> None:
    bootstrap, ca = secured_broker
    _context, stage, exits = stage_of(refused_password(bootstrap, ca, tmp_path))
    name = stage.name
    with caplog.at_level(logging.WARNING):
        await stage.start()
        try:
            await waits.until(lambda: stage.ended or stage.waiting_to_start, within=WITHIN_SECONDS)
        finally:
            await stage.stop()
    assert (stage.ended, exits) == (True, [70])
    [ended] = [record for record in caplog.records
               if record.getMessage() == f"stage {name} ended with an error"]
    assert ended.exc_info is not None and "SaslAuthenticationFailed" in repr(ended.exc_info[1])
    assert not [record for record in caplog.records if "cannot start" in record.getMessage()]


async def test_a_password_refused_once_the_broker_answers_ends_the_waiting_stage(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """It waited for the broker (down: an outage), then met a password refused (a
    mistake): ended for good, `/readyz`'s down names it once, as ended (it named it twice,
    waiting too), and the gauge says it waits for nothing."""
    made = certificates.generate(tmp_path / "tls")
    port, controller_port = ports.free_ports(2)
    broker = LocalKafka(tmp_path / "kafka", port=port, controller_port=controller_port,
                        security=Security(made, {"admin": secrets.token_urlsafe(16),
                                                 "metrics": secrets.token_urlsafe(16)}))
    context, stage, exits = stage_of(
        refused_password(broker.bootstrap_servers, made.ca, tmp_path))
    name = stage.name
    try:
        with caplog.at_level(logging.WARNING):
            await stage.start()
            try:
                await waits.until(lambda: stage.waiting_to_start, within=WITHIN_SECONDS)
                assert context.down() == [name]
                await asyncio.to_thread(broker.start)
                await waits.until(lambda: stage.ended, within=WITHIN_SECONDS)
                assert context.down() == [name]
                assert not stage.waiting_to_start
                assert waiting_for_outage(name) == 0
            finally:
                await stage.stop()
    finally:
        await asyncio.to_thread(broker.stop)
    assert exits == [70]
