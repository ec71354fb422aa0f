"""`python -m devtools.run` (what `bin/run` calls): the whole pipeline on this machine, and
the demo data. Dev tooling: the product's `routing` command offers none of this."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path
from typing import Annotated

import typer

from devtools import demo, demo_seed, processes
from devtools.kafka_broker import BrokerError, LocalKafka
from services.core import service_context
from services.core.settings import PROJECT_ROOT, from_environment

app = typer.Typer(help="Run the pipeline locally, with demo data.", no_args_is_help=True,
                  pretty_exceptions_enable=False)

DATA = PROJECT_ROOT / ".data"
# The broker's JMX exporter, where deploy/prometheus/prometheus.local.yml scrapes it.
BROKER_METRICS_PORT = 9404


@app.command()
def up(
    data_dir: Annotated[Path, typer.Option(help="Where the broker, database and logs live")] = DATA,
    demo_data: Annotated[bool, typer.Option(
        "--demo/--no-demo", help="Load demo customers and credentials on first start")] = True,
) -> None:
    """Start the broker (unless KAFKA_BOOTSTRAP_SERVERS is set) and the three services."""
    started = time.monotonic()
    # What the pipeline writes (the store holds customers' personal data, the logs and
    # the demo credentials what reaches them) is readable by its owner only.
    os.umask(0o077)
    for kept in [*data_dir.glob("routing.db*"), *(data_dir / "logs").glob("*")]:
        kept.chmod(kept.stat().st_mode & 0o700)  # written before this was so
    settings = processes.one_machine(from_environment(), data_dir)
    broker: LocalKafka | None = None
    if "kafka_bootstrap_servers" not in settings.model_fields_set:  # as Settings reads it
        broker = LocalKafka(data_dir / "kafka", port=9092, controller_port=9093, heap="768m",
                            metrics_port=BROKER_METRICS_PORT)
        typer.echo(f"starting Kafka on {broker.bootstrap_servers} (log: {broker.log_file})")
        try:
            broker.start()
        except BrokerError as error:
            typer.echo(f"bin/run: {error}", err=True)
            raise typer.Exit(1) from None
        settings = settings.model_copy(
            update={"kafka_bootstrap_servers": broker.bootstrap_servers})
    if demo_data:
        for line in demo_seed.seed(settings, data_dir / "credentials.env"):
            typer.echo(line)
    service_ports = processes.local_ports(settings)
    env = processes.service_env(bootstrap=settings.kafka_bootstrap_servers,
                                database_url=settings.database_url, ports=service_ports,
                                topic_partitions=settings.kafka_topic_partitions)
    services = processes.pipeline_processes(env, service_ports, data_dir / "logs",
                                            split=True)
    stopping = False

    def request_stop(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    try:
        for service in services:
            service.start()
        for service in services:
            service.wait_ready()
        typer.echo(f"ready in {time.monotonic() - started:.1f}s")
        for service in services:
            typer.echo(f"  {service.name:<10} {service.url}  (docs {service.url}/docs,"
                       f" log {service.log_file})")
        typer.echo(f"  kafka      {settings.kafka_bootstrap_servers}"
                   + (f"  (metrics {broker.metrics_url})" if broker else ""))
        typer.echo("Ctrl-C stops everything.")
        while not stopping:
            for service in services:
                status = service.process.poll() if service.process is not None else None
                if status is not None:
                    typer.echo(exit_notice(service.name, status, service.log_file), err=True)
                    stopping = True
            time.sleep(0.5)
    finally:
        typer.echo("stopping ...")
        for service in reversed(services):
            service.stop()
        if broker is not None:
            broker.stop()
        typer.echo("stopped")


def exit_notice(name: str, status: int, log_file: Path) -> str:
    """What `up` says when a service's process ends by itself, before it stops the rest:
    which service, its exit status (or the signal that ended it), and its log."""
    if status < 0:
        how = f"was ended by {signal.Signals(-status).name}"
    elif status == service_context.STAGE_ENDED_EXIT:
        how = f"exited with status {status} (a stage ended for good)"
    else:
        how = f"exited with status {status}"
    return f"{name} {how}; see {log_file}"


@app.command("demo-data")
def demo_customers(count: Annotated[int, typer.Option(min=4)] = 2000) -> None:
    """Load generated demo customers and purchases into an empty customer store."""
    loaded = asyncio.run(demo.seed_if_empty(from_environment().database_url, count=count))
    typer.echo(f"loaded {loaded} customers" if loaded else "the store is not empty: unchanged")


if __name__ == "__main__":
    app()
