"""`routing simulate`: ask the router's simulator to replay a past window through a
candidate routing table (and segment rules), print the comparison as JSON and draw it
(API_TOKEN: an admin credential)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

from services.core import command_line, moments, report_client
from services.core.settings import from_environment
from services.simulator import report, service

# The request's fields (the API's) as the command's options set them.
OPTIONS = {"body.start": "--start", "body.end": "--end", "body.table": "--table",
           "body.table_version_id": "--table-version-id", "body.rules": "--rules",
           "body.replications": "--replications"}


def request_body(start: datetime, end: datetime, *, table: Path | None, rules: Path | None,
                 table_version_id: int | None, replications: int) -> dict[str, Any]:
    return {"start": start.isoformat(), "end": end.isoformat(),
            "table": candidate(table, "--table"), "table_version_id": table_version_id,
            "rules": candidate(rules, "--rules"), "replications": replications}


def candidate(path: Path | None, option: str) -> str | None:
    """A candidate file's text; one that cannot be read is the caller's mistake, a usage
    error naming the option, not a traceback."""
    if path is None:
        return None
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        problem = exc.strerror or type(exc).__name__
    except UnicodeDecodeError:
        problem = "not UTF-8 text"
    raise typer.BadParameter(f"{str(path)!r}: {problem}; a YAML or JSON file is accepted",
                             param_hint=option)


def moment(value: str, option: str) -> datetime:
    try:
        return moments.parse(value)
    except ValueError as exc:
        raise typer.BadParameter(f"{value!r}: {exc}", param_hint=option) from exc


def simulate(
    start: Annotated[str, typer.Option(help="Window start, e.g. 2026-11-02T00:00:00+00:00")],
    end: Annotated[str, typer.Option(help="Window end (not after now), with its offset")],
    table: Annotated[Path | None, typer.Option(
        help="A candidate routing table file (default: the version in force at END)")] = None,
    table_version_id: Annotated[int | None, typer.Option(
        help="Or a stored routing table version")] = None,
    rules: Annotated[Path | None, typer.Option(
        help="Candidate segment rules (default: each ticket keeps its segment)")] = None,
    replications: Annotated[int, typer.Option(
        min=1, max=service.MOST_REPLICATIONS)] = service.REPLICATIONS,
    out: Annotated[Path, typer.Option(help="Where to draw the PNG")] = Path("simulation.png"),
    url: Annotated[str | None, typer.Option(
        help="The router (default: ROUTER_URL, itself http://127.0.0.1:ROUTER_PORT)")] = None,
) -> None:
    """Replay a past window through a candidate; nothing is written or published."""
    settings = from_environment()
    base = url or settings.router_url
    token = settings.api_token.get_secret_value() if settings.api_token else None
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    body = request_body(moment(start, "--start"), moment(end, "--end"), table=table, rules=rules,
                        table_version_id=table_version_id, replications=replications)
    try:
        answer = report_client.asked_in_turn(lambda: httpx.post(
            f"{base}/v1/simulations", json=body, headers=headers,
            timeout=report_client.REPORT_TIMEOUT_SECONDS))
    except httpx.HTTPError as exc:
        typer.echo(f"cannot reach the router at {base}: {exc}", err=True)
        raise typer.Exit(1) from exc
    if answer.status_code != 200:
        typer.echo(f"refused ({answer.status_code}):"
                   f" {command_line.refusal(answer.text, OPTIONS)}", err=True)
        raise typer.Exit(1)
    result = answer.json()
    typer.echo(json.dumps(result, indent=2))
    report.render(result, out=out)
    typer.echo(f"{out} written", err=True)
