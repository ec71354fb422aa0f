"""A PNG report of response times and first-response targets, from the stats API.

    python -m services.metrics.report --window 24h --out report.png \\
        [--url http://127.0.0.1:8082]

Per department: first-response time (p50, p90) and the share of targets met; per
segment, the same side by side; per protected group, its service relative to the
best-served group (services/metrics/parity_report.py). Drawn with matplotlib's Agg
renderer (no display).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from matplotlib.axes import Axes
from matplotlib.figure import Figure, FigureBase

from services.core import command_line, report_client
from services.core.settings import from_environment
from services.metrics import parity_report

OBJECTIVE = 0.95  # share of first-response targets met (deploy/prometheus/rules)
UNITS = ((7200.0, "hours", 3600.0), (120.0, "minutes", 60.0), (0.0, "seconds", 1.0))

app = command_line.App(add_completion=False, pretty_exceptions_enable=False)


def fetch(url: str, window: str, *, token: str | None,
          timeout: float = report_client.REPORT_TIMEOUT_SECONDS,
          ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(departments, segments) statistics over the window from the metrics service
    (`token`: an admin credential; asked again while the credential's earlier report is
    under way: report_client)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with httpx.Client(base_url=url, timeout=timeout, headers=headers) as client:
        departments = report_client.asked_in_turn(
            lambda: client.get("/v1/departments", params={"window": window}))
        segments = report_client.asked_in_turn(
            lambda: client.get("/v1/segments/stats", params={"window": window}))
    for answer in (departments, segments):
        answer.raise_for_status()
    return departments.json()["departments"], segments.json()["segments"]


def fetch_parity(url: str, window: str, *, token: str | None,
                 timeout: float = report_client.REPORT_TIMEOUT_SECONDS) -> dict[str, Any]:
    """Service parity per protected group over the window (`token`: an admin's)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with httpx.Client(base_url=url, timeout=timeout, headers=headers) as client:
        answer = report_client.asked_in_turn(
            lambda: client.get("/v1/parity/stats", params={"window": window}))
    answer.raise_for_status()
    parity: dict[str, Any] = answer.json()
    return parity


def time_unit(largest_seconds: float) -> tuple[str, float]:
    """The unit that keeps the longest bar readable: (name, seconds per unit)."""
    for threshold, name, seconds in UNITS:
        if largest_seconds >= threshold:
            return name, seconds
    return "seconds", 1.0


def _percentile(row: dict[str, Any], share: str) -> float:
    value = row["first_response_seconds"][share]
    return float(value) if value is not None else 0.0


def _response_times(axes: Axes, rows: Sequence[dict[str, Any]], key: str) -> None:
    names = [row[key] for row in rows]
    unit, per = time_unit(max([_percentile(r, "p90") for r in rows], default=0.0))
    positions = range(len(names))
    for offset, share in ((-0.2, "p50"), (0.2, "p90")):
        axes.barh([p + offset for p in positions], [_percentile(r, share) / per for r in rows],
                  height=0.4, label=share)
    for position, row in enumerate(rows):
        if row["first_response_seconds"]["p50"] is None:
            axes.text(0, position, " no first response yet", va="center", fontsize=8)
    axes.set_yticks(list(positions), names)
    axes.invert_yaxis()
    axes.set_xlabel(f"first response ({unit})")
    axes.legend(loc="best")


def _attainment(axes: Axes, rows: Sequence[dict[str, Any]], key: str) -> None:
    names = [row[key] for row in rows]
    ratios = [row["first_response_target"]["ratio"] for row in rows]
    colours = ["tab:grey" if r is None else "tab:green" if r >= OBJECTIVE else "tab:red"
               for r in ratios]
    axes.barh(names, [100 * (r or 0.0) for r in ratios], color=colours)
    axes.axvline(100 * OBJECTIVE, color="black", linestyle="--", linewidth=1)
    axes.invert_yaxis()
    axes.set_xlim(0, 105)
    axes.set_xlabel(f"first-response targets met (%), objective {OBJECTIVE:.0%}")
    for position, row in enumerate(rows):
        target = row["first_response_target"]
        share = "no target decided" if target["ratio"] is None else f"{target['ratio']:.0%}"
        axes.text(1, position, f"{share}: met {target['met']}  missed {target['missed']}"
                  f"  pending {target['pending']}", va="center", fontsize=7)


def render(departments: Sequence[dict[str, Any]], segments: Sequence[dict[str, Any]], *,
           window: str, out: Path, generated: datetime | None = None,
           parity: dict[str, Any] | None = None) -> Path:
    """Draw the report into `out` (PNG); with `parity` (the parity stats), its section."""
    moment = (generated or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M UTC")
    height = 2.5 + 0.45 * max(len(departments), len(segments), 1)
    parity_height = 0.0 if parity is None else 2.0 + 0.4 * max(
        [len(a["groups"]) for a in parity["attributes"]] or [1])
    figure = Figure(figsize=(13, 2 * height + parity_height), layout="constrained")
    figure.suptitle(f"Response times and first-response targets, last {window}"
                    f" (generated {moment})")
    services: FigureBase = figure
    if parity is not None:
        parts = figure.subfigures(2, 1, squeeze=False,
                                  height_ratios=[2 * height, parity_height])
        services = parts[0][0]
        parity_report.draw(parts[1][0], parity)
    (by_department, met_department), (by_segment, met_segment) = services.subplots(2, 2)
    for axes, rows, key, title in (
            (by_department, departments, "department", "per department"),
            (by_segment, segments, "segment", "per segment")):
        axes.set_title(f"First response time {title}")
        if rows:
            _response_times(axes, rows, key)
        else:
            axes.text(0.5, 0.5, "no tickets in the window", ha="center", va="center")
    for axes, rows, key, title in ((met_department, departments, "department", "department"),
                                   (met_segment, segments, "segment", "segment")):
        axes.set_title(f"First-response targets met per {title}")
        if rows:
            _attainment(axes, rows, key)
        else:
            axes.text(0.5, 0.5, "no tickets in the window", ha="center", va="center")
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, format="png", dpi=100)
    return out


@app.command()
def main(
    out: Annotated[Path, typer.Option(help="Where to write the PNG")] = Path("report.png"),
    window: Annotated[str, typer.Option(help="15m, 1h, 24h, 7d ...")] = "24h",
    url: Annotated[str | None, typer.Option(
        help="The metrics service (default: http://127.0.0.1:METRICS_PORT)")] = None,
) -> None:
    """Render per-department and per-segment response times and target attainment, and
    service parity per protected group (API_TOKEN: an admin credential)."""
    settings = from_environment()
    base = url or f"http://127.0.0.1:{settings.metrics_port}"
    token = settings.api_token.get_secret_value() if settings.api_token else None
    try:
        departments, segments = fetch(base, window, token=token)
        parity = fetch_parity(base, window, token=token)
    except httpx.HTTPError as exc:
        typer.echo(f"cannot read the stats at {base}: {exc}", err=True)
        raise typer.Exit(1) from exc
    render(departments, segments, window=window, out=out, parity=parity)
    typer.echo(f"{out} written: {len(departments)} departments, {len(segments)} segments,"
               f" {len(parity['attributes'])} protected attributes")


if __name__ == "__main__":
    app()
