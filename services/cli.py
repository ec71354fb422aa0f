"""`routing`: operate the pipeline (dev tooling, such as `bin/run`, lives in devtools/)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer

from services import credentials_cli, webhooks_cli
from services.core import command_line, dead_letter_reading
from services.core.settings import Settings, from_environment
from services.router import dead_letter_records
from services.simulator import cli as simulator_cli

T = TypeVar("T")

app = command_line.App(help="Customer-service routing: operate the pipeline.",
                       no_args_is_help=True, pretty_exceptions_enable=False)

@app.command()
def topics() -> None:
    """Create the pipeline's topics, the replay markers' topic and the department lanes of
    the routing table in force (the store's version, else the file); print which version
    that was, and the topics."""
    from services.core import broker_start, store_start
    from services.core import topics as names
    from services.core.config_files import ConfigError
    from services.router import priority, routing, table_file

    settings = from_environment()

    async def in_force() -> tuple[routing.RoutingTable, str]:
        # As the services read it: an upload through the router's API included.
        async with store_start.command_sessions(settings) as sessions:
            return await table_file.in_force_and_source(sessions,
                                                        settings.routing_table_file)

    try:
        table, source = asyncio.run(in_force())
    except ConfigError as exc:  # the file's or the version's mistake, named by its source
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from exc
    # The markers' topic too: the router makes it at its first replay, where it may.
    wanted = [*names.PIPELINE, names.DEAD_LETTERS_REPLAYED,
              *(topic for department in table.departments
                for topic in priority.lane_topics(department))]
    asyncio.run(broker_start.topics_made(settings, wanted))
    typer.echo(f"routing table in force: {source} (version {table.version})")
    typer.echo("\n".join(wanted))


async def _reaching(settings: Settings, work: Callable[[], Awaitable[T]]) -> T:
    """`work` done once the broker answers: its outage or a mistake in the Kafka settings
    ends the command at once, in one line naming the setting (exit 1)."""
    from services.core import broker_start

    await broker_start.reached(settings)
    return await work()


app.add_typer(credentials_cli.app, name="credentials")
app.command("simulate")(simulator_cli.simulate)
app.add_typer(webhooks_cli.app, name="webhooks")

segments = command_line.App(help="Segment rules: check and analyse before use.",
                            no_args_is_help=True)
app.add_typer(segments, name="segments")


@segments.command("analyse")
def analyse(
    candidate: Annotated[Path | None, typer.Option(
        help="A candidate rule file to compare with the one in force")] = None,
) -> None:
    """Run the rule set in force (or a candidate against it) over the whole customer
    base and print the report as JSON (with `proxy_detection`: rules that stand in for a
    protected attribute)."""
    import json
    from dataclasses import asdict
    from datetime import UTC, datetime

    from services.core.config_files import ConfigError
    from services.segmenter import bootstrap, rules_file, service

    settings = from_environment()
    try:
        proposed = rules_file.load(candidate) if candidate else None
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from exc

    async def run() -> object:
        async with bootstrap.connect(settings, client_id="routing-cli") as connected:
            # As the services serve them: an upload or a rollback included.
            live = await rules_file.in_force(connected.sessions, settings.segment_rules_file)
            customers, now = connected.segmenter.customers, datetime.now(UTC)
            policy = bootstrap.proxy_policy(settings)
            if proposed is None:
                return await service.analyse(customers, live, now=now, proxy_policy=policy)
            return await service.analyse(customers, proposed, live=live, now=now,
                                         proxy_policy=policy)

    try:
        report = asyncio.run(run())
    except ConfigError as exc:  # the rules in force: a file or a version this release refuses
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from exc
    typer.echo(json.dumps(asdict(report), indent=2))  # type: ignore[call-overload]


@app.command("recompute-tiers")
def recompute_tiers() -> None:
    """Recompute every customer's values, the tier cutoffs (by the tier settings) and the
    tiers now, and publish the tier changes so running segmenters refresh their cutoffs."""
    from datetime import UTC, datetime

    from services.segmenter import bootstrap, service

    settings = from_environment()

    async def run() -> service.Recomputed:
        async with bootstrap.connect(settings, client_id="routing-cli") as connected:
            segmenter = connected.segmenter
            return await service.recompute_tiers(segmenter.customers, segmenter.publisher,
                                                 now=datetime.now(UTC))

    recomputed = asyncio.run(_reaching(settings, run))  # the broker, before the store
    typer.echo(f"tier changes: {len(recomputed.tier_changes)}; tier sizes: {recomputed.sizes}")


dead_letters_cli = command_line.App(help="Dead letters: what the stages could not process.",
                                    no_args_is_help=True)
app.add_typer(dead_letters_cli, name="dead-letters")


@dead_letters_cli.command("list")
def list_dead_letters(
    source_topic: Annotated[str | None, typer.Option(help="Only those from this topic")] = None,
    error_class: Annotated[str | None, typer.Option(help="Only this error class")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 100,
    since: Annotated[str | None, typer.Option(
        help=f"Only those after this one, for the next page: {dead_letter_reading.ID.words}"
    )] = None,
    include_value: Annotated[bool, typer.Option(
        help="Show the values (they may hold personal data)")] = False,
) -> None:
    """Print dead letters as JSON, one a line, in (partition, offset) order."""
    import json

    from services.router import dead_letters

    if since:  # a usage error naming the option, before Kafka is reached
        try:
            dead_letter_reading.parse_id(since)
        except ValueError as exc:
            raise typer.BadParameter(f"{since!r}: {exc}", param_hint="--since") from exc
    settings = from_environment()
    try:
        found = asyncio.run(_reaching(settings, lambda: dead_letters.list_dead_letters(
            settings, source_topic=source_topic, error_class=error_class, limit=limit,
            since=since, include_value=include_value)))
    except ValueError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from exc
    except dead_letters.Unavailable as exc:
        typer.echo(f"Kafka unavailable: {exc}", err=True)
        raise typer.Exit(1) from exc
    for dead_letter in found:
        typer.echo(json.dumps(dead_letter))


# A dead letters' selection's fields (the HTTP API's) as `replay` names them.
_REPLAY_OPTIONS = {"ids": "IDS", "source_topic": "--source-topic",
                   "error_class": "--error-class", "limit": "--limit"}


@dead_letters_cli.command("replay")
def replay_dead_letters(
    ids: Annotated[list[str] | None, typer.Argument(
        metavar=_REPLAY_OPTIONS["ids"],
        help=f"Dead letters, each {dead_letter_reading.ID.words}; or select with the options"
    )] = None,
    source_topic: Annotated[str | None, typer.Option(help="All from this topic")] = None,
    error_class: Annotated[str | None, typer.Option(help="All of this error class")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000,
                                       help="At most this many by a filter")] = 1000,
) -> None:
    """Replay dead letters to their source topics, each at most once; print the counts."""
    import json

    from services.router import dead_letters

    chosen = tuple(ids or ())
    try:
        selection = dead_letter_records.Selection(
            ids=chosen, source_topic=source_topic, error_class=error_class, limit=limit)
        settings = from_environment()
        result = asyncio.run(_reaching(settings, lambda: dead_letters.replay(settings, selection)))
    except dead_letter_records.InvalidSelection as exc:
        problem = exc.problem_in(_REPLAY_OPTIONS)
        if exc.index is not None:  # the id refused, as `list --since` says it
            problem = f"{chosen[exc.index]!r}: {problem}"
        raise typer.BadParameter(problem, param_hint=exc.field_in(_REPLAY_OPTIONS)) from exc
    except (dead_letters.Unavailable, dead_letters.ReplayConflict) as exc:
        typer.echo(f"nothing replayed: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(json.dumps(result.counts()))
