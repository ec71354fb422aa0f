"""`routing`: run the whole pipeline locally, and operate it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from services import credentials_cli, webhooks_cli
from services.core.settings import PROJECT_ROOT, Settings
from services.local import processes
from services.local.kafka_broker import LocalKafka

if TYPE_CHECKING:
    from services.segmenter.store import CustomerStore

app = typer.Typer(help="Customer-service routing: run and operate the pipeline.",
                  no_args_is_help=True, pretty_exceptions_enable=False)

DATA = PROJECT_ROOT / ".data"


@app.command()
def up(
    data_dir: Annotated[Path, typer.Option(help="Where the broker, database and logs live")] = DATA,
    demo: Annotated[bool, typer.Option(help="Load demo customers on first start")] = True,
) -> None:
    """Start the broker (unless KAFKA_BOOTSTRAP_SERVERS is set) and the three services."""
    started = time.monotonic()
    settings = Settings()
    broker: LocalKafka | None = None
    if "KAFKA_BOOTSTRAP_SERVERS" not in os.environ:
        broker = LocalKafka(data_dir / "kafka", port=9092, controller_port=9093, heap="768m")
        typer.echo(f"starting Kafka on {broker.bootstrap_servers} (log: {broker.log_file})")
        broker.start()
        settings = settings.model_copy(
            update={"kafka_bootstrap_servers": broker.bootstrap_servers})
    if demo:
        from services.segmenter import demo as demo_data

        loaded = asyncio.run(demo_data.seed_if_empty(settings.database_url))
        typer.echo(f"demo customers loaded: {loaded}" if loaded else "customer store in use")
        _demo_credentials(settings, data_dir / "credentials.env")
    env = processes.service_env(
        bootstrap=settings.kafka_bootstrap_servers, database_url=settings.database_url,
        ports={"router": settings.router_port, "segmenter": settings.segmenter_port,
               "metrics": settings.metrics_port})
    services = [
        processes.ServiceProcess(name, port, env, data_dir / "logs" / f"{name}.log")
        for name, port in (("segmenter", settings.segmenter_port),
                           ("router", settings.router_port),
                           ("metrics", settings.metrics_port))
    ]
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
        typer.echo(f"  kafka      {settings.kafka_bootstrap_servers}")
        typer.echo("Ctrl-C stops everything.")
        while not stopping:
            for service in services:
                if service.process is not None and service.process.poll() is not None:
                    typer.echo(f"{service.name} exited; see {service.log_file}", err=True)
                    stopping = True
            time.sleep(0.5)
    finally:
        typer.echo("stopping ...")
        for service in reversed(services):
            service.stop()
        if broker is not None:
            broker.stop()
        typer.echo("stopped")


def _demo_credentials(settings: Settings, out: Path) -> None:
    from services.router import table_file

    departments = table_file.load(settings.routing_table_file).departments
    if asyncio.run(credentials_cli.issue_demo_credentials(
            settings.database_url, sorted(departments), out)):
        typer.echo(f"demo credentials (admin, platform, one per department) written to {out}")
    elif out.exists():
        typer.echo(f"credentials in use; the demo ones are in {out}")


@app.command()
def topics() -> None:
    """Create the pipeline's topics and the department queues of the routing table."""
    from services.core import kafka
    from services.core import topics as names
    from services.router import priority, table_file

    settings = Settings()
    table = table_file.load(settings.routing_table_file)
    wanted = [*names.PIPELINE, *(topic for department in table.departments
                                 for topic in priority.lane_topics(department))]
    asyncio.run(kafka.ensure_topics(settings, wanted))
    typer.echo("\n".join(wanted))


app.add_typer(credentials_cli.app, name="credentials")
app.add_typer(webhooks_cli.app, name="webhooks")

segments = typer.Typer(help="Segment rules: check and analyse before use.", no_args_is_help=True)
app.add_typer(segments, name="segments")


@segments.command("analyse")
def analyse(
    candidate: Annotated[Path | None, typer.Option(
        help="A candidate rule file to compare with the one in force")] = None,
) -> None:
    """Run the rule set in force (or a candidate against it) over the whole customer
    base and print the report as JSON."""
    import json
    from dataclasses import asdict

    from services.core.config_files import ConfigError
    from services.segmenter import rules_api, rules_file

    settings = Settings()
    try:
        live = rules_file.load(settings.segment_rules_file)
        proposed = rules_file.load(candidate) if candidate else None
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from exc

    async def run() -> object:
        async with _store(settings) as store:
            if proposed is None:
                return await rules_api.analyse_customer_base(store, live)
            return await rules_api.analyse_customer_base(store, proposed, live=live)

    typer.echo(json.dumps(asdict(asyncio.run(run())), indent=2))  # type: ignore[call-overload]


@app.command("recompute-tiers")
def recompute_tiers() -> None:
    """Recompute every customer's values, the tier cutoffs and the tiers now."""
    from datetime import UTC, datetime

    async def run() -> tuple[int, dict[str, int]]:
        async with _store(Settings()) as store:
            changes = await store.recompute_population(now=datetime.now(UTC))
            return len(changes), await store.tier_sizes()

    changed, sizes = asyncio.run(run())
    typer.echo(f"tier changes: {changed}; tier sizes: {sizes}")


@app.command("demo-data")
def demo_data(count: Annotated[int, typer.Option(min=4)] = 2000) -> None:
    """Load generated demo customers and purchases into an empty customer store."""
    from services.segmenter import demo

    loaded = asyncio.run(demo.seed_if_empty(Settings().database_url, count=count))
    typer.echo(f"loaded {loaded} customers" if loaded else "the store is not empty: unchanged")


@contextlib.asynccontextmanager
async def _store(settings: Settings) -> AsyncIterator[CustomerStore]:
    from services.core import db, migrate
    from services.segmenter.cache import CustomerCache
    from services.segmenter.store import CustomerStore

    await migrate.upgrade(settings.database_url)
    engine = db.engine(settings.database_url)
    try:
        store = CustomerStore(db.sessions(engine),
                              cache=CustomerCache(max_customers=0, ttl_seconds=1))
        await store.load_cutoffs()
        yield store
    finally:
        await engine.dispose()


dead_letters_cli = typer.Typer(help="Dead letters: what the stages could not process.",
                               no_args_is_help=True)
app.add_typer(dead_letters_cli, name="dead-letters")


@dead_letters_cli.command("list")
def list_dead_letters(
    source_topic: Annotated[str | None, typer.Option(help="Only those from this topic")] = None,
    error_class: Annotated[str | None, typer.Option(help="Only this error class")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 100,
    since: Annotated[str | None, typer.Option(
        help="Only those after this id (partition:offset), for the next page")] = None,
    include_value: Annotated[bool, typer.Option(
        help="Show the values (they may hold personal data)")] = False,
) -> None:
    """Print dead letters as JSON, one a line, in (partition, offset) order."""
    import json

    from services.router import dead_letters

    try:
        found = asyncio.run(dead_letters.list_dead_letters(
            Settings(), source_topic=source_topic, error_class=error_class, limit=limit,
            since=since, include_value=include_value))
    except ValueError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from exc
    except dead_letters.Unavailable as exc:
        typer.echo(f"Kafka unavailable: {exc}", err=True)
        raise typer.Exit(1) from exc
    for dead_letter in found:
        typer.echo(json.dumps(dead_letter))


@dead_letters_cli.command("replay")
def replay_dead_letters(
    ids: Annotated[list[str] | None, typer.Argument(
        help="Dead-letter ids (partition:offset); or select with the options")] = None,
    source_topic: Annotated[str | None, typer.Option(help="All from this topic")] = None,
    error_class: Annotated[str | None, typer.Option(help="All of this error class")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000,
                                       help="At most this many by a filter")] = 1000,
) -> None:
    """Replay dead letters to their source topics, each at most once; print the counts."""
    import json

    from services.router import dead_letter_records, dead_letters

    try:
        selection = dead_letter_records.Selection(
            ids=tuple(ids or ()), source_topic=source_topic, error_class=error_class,
            limit=limit)
        result = asyncio.run(dead_letters.replay(Settings(), selection))
    except dead_letter_records.InvalidSelection as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from exc
    except (dead_letters.Unavailable, dead_letters.ReplayConflict) as exc:
        typer.echo(f"nothing replayed: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(json.dumps(result.counts()))
