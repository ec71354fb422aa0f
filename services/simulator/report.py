"""A PNG of a simulation: per department and per segment, what happened next to what the
candidate would have done (first-response p90, targets met, tickets received and peak
backlog). Drawn with matplotlib's Agg renderer, as the metrics report."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib.axes import Axes
from matplotlib.figure import Figure

from services.metrics import report

SIDES = (("actual", "what happened", "tab:grey"), ("simulated", "simulated", "tab:blue"))


def _bars(axes: Axes, rows: Sequence[dict[str, Any]], key: str,
          value: Any, label: str) -> None:
    names = [row[key] for row in rows]
    for offset, (side, name, colour) in zip((-0.2, 0.2), SIDES, strict=True):
        axes.barh([position + offset for position in range(len(names))],
                  [_drawn(value(row[side])) for row in rows], height=0.4, label=name,
                  color=colour)
    axes.set_yticks(list(range(len(names))), names)
    axes.invert_yaxis()
    axes.set_xlabel(label)
    axes.legend(loc="best", fontsize=8)


def _p90(rows: Sequence[dict[str, Any]]) -> tuple[str, Any]:
    largest = max((row[side]["first_response_seconds"]["p90"] or 0.0
                   for row in rows for side, _, _ in SIDES), default=0.0)
    unit, per = report.time_unit(largest)
    # None (no response) draws no bar: the scale is logarithmic, waits span minutes to days
    return f"first response p90 ({unit}, log scale)", \
        lambda figures: None if not figures["first_response_seconds"]["p90"] \
        else figures["first_response_seconds"]["p90"] / per


def title(result: dict[str, Any]) -> str:
    """What a simulation replayed, how close, the window's tickets it did not replay
    (held as dead letters, or their state gone: in no bar), and the departments whose
    lanes were missing, which it applied to every ticket (their dead-lettered tickets in
    no bar)."""
    error = result["replay_error"]
    said = (f"Simulation of table {result['candidate']['table_version']} over"
            f" {result['window']['start'][:16]} .. {result['window']['end'][:16]}\n"
            f"({result['tickets']} tickets, {result['replications']} replications);"
            f" largest gap to what happened: p50 {_share(error['p50'])},"
            f" p90 {_share(error['p90'])}")
    held, gone = result["held"], result["without_state"]
    if held or gone:
        said += (f"\n{held + gone} tickets of the window not replayed, in no bar:"
                 f" {held} held as dead letters, {gone} whose state is gone")
    missing = result["lanes_missing"]["departments"]
    if missing:
        said += (f"\nLanes missing when simulated, applied to every ticket:"
                 f" {', '.join(row['department'] for row in missing)};"
                 f" {sum(row['dead_lettered'] for row in missing):g} tickets a replication"
                 f" dead-lettered, in no bar")
    return said


def render(result: dict[str, Any], *, out: Path) -> Path:
    """Draw a simulation (the API's answer) into `out`."""
    departments, segments = result["departments"], result["segments"]
    height = 2.5 + 0.45 * max(len(departments), len(segments), 1)
    figure = Figure(figsize=(14, 2 * height), layout="constrained")
    figure.suptitle(title(result))
    (department_p90, department_met, department_load), (segment_p90, segment_met, spare) = \
        figure.subplots(2, 3)
    for axes, rows, key in ((department_p90, departments, "department"),
                            (segment_p90, segments, "segment")):
        label, value = _p90(rows)
        axes.set_title(f"First response p90 per {key}")
        _bars(axes, rows, key, value, label)
        if any(value(row[side]) for row in rows for side, _, _ in SIDES):
            axes.set_xscale("log")
    for axes, rows, key in ((department_met, departments, "department"),
                            (segment_met, segments, "segment")):
        axes.set_title(f"First-response targets met per {key}")
        _bars(axes, rows, key, lambda figures: 100 * (figures["attainment"] or 0.0),
              "targets met (%)")
        axes.axvline(100 * report.OBJECTIVE, color="black", linestyle="--", linewidth=1)
        axes.set_xlim(0, 105)
    department_load.set_title("Peak backlog per department")
    _bars(department_load, departments, "department",
          lambda figures: figures["peak_backlog"], "most tickets awaiting a first response")
    spare.set_title("Tickets received per department")
    _bars(spare, departments, "department", lambda figures: figures["received"], "tickets")
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, format="png", dpi=90)
    return out


def _drawn(value: float | None) -> float:
    return float("nan") if value is None else value


def _share(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"
