"""The service parity section of the PNG report, drawn from `GET /v1/parity/stats`."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from matplotlib.axes import Axes
from matplotlib.figure import Figure, FigureBase

MEASURE_NAMES = {"first_response": "first response", "target_attainment": "targets met",
                 "without_escalation": "not escalated"}


def render(answer: Mapping[str, Any], *, out: Path) -> Path:
    """The parity section alone, as a PNG."""
    rows = max([len(a["groups"]) for a in answer["attributes"]] or [1])
    figure = Figure(figsize=(13, 2.0 + 0.4 * rows), layout="constrained")
    draw(figure, answer)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, format="png", dpi=100)
    return out


def draw(figure: FigureBase, answer: Mapping[str, Any]) -> None:
    """One chart per protected attribute: each group's lowest ratio to the best-served
    group, red when flagged, suppressed groups named without figures."""
    threshold, minimum = answer["threshold"], answer["minimum_group_size"]
    # Two lines: on one, the heading ran off both sides of the report's width.
    figure.suptitle(f"Service parity across protected groups: lowest ratio to the best-served"
                    f" group (dashed: {threshold:.0%}).\nRed: below it beyond chance (flagged);"
                    f" orange: below it within chance; groups under {minimum} tickets hidden")
    attributes = answer["attributes"]
    if not attributes:
        figure.text(0.5, 0.5, "no protected attribute configured", ha="center")
        return
    for axes, attribute in zip(figure.subplots(1, len(attributes), squeeze=False)[0],
                               attributes, strict=True):
        _attribute(axes, attribute, threshold, minimum)


def _attribute(axes: Axes, attribute: Mapping[str, Any], threshold: float,
               minimum: int) -> None:
    axes.set_title(attribute["attribute"].replace("_", " "))
    groups = attribute["groups"]
    if not groups:
        axes.text(0.5, 0.5, "no tickets in the window", ha="center", va="center")
        return
    names = [group["group"] for group in groups]
    ratios = [group["disparity_ratio"] for group in groups]
    colours = ["tab:grey" if ratio is None else "tab:red" if group["below_threshold"]
               else "tab:orange" if ratio < threshold else "tab:green"
               for group, ratio in zip(groups, ratios, strict=True)]
    axes.barh(names, [100 * (ratio or 0.0) for ratio in ratios], color=colours)
    axes.axvline(100 * threshold, color="black", linestyle="--", linewidth=1)
    axes.invert_yaxis()
    axes.set_xlim(0, 105)
    axes.set_xlabel("lowest ratio to the best-served group (%)")
    for position, group in enumerate(groups):
        axes.text(1, position, _label(group, minimum), va="center", fontsize=7)


def _label(group: Mapping[str, Any], minimum: int) -> str:
    if group["suppressed"]:
        return f"fewer than {minimum} tickets"
    known = {m: r for m, r in group["ratios"].items() if r is not None}
    if not known:
        return f"{group['tickets']} tickets, not compared"
    lowest = min(known, key=lambda m: known[m])
    flag = "  FLAGGED" if group["below_threshold"] else ""
    return (f"{known[lowest]:.0%} on {MEASURE_NAMES.get(lowest, lowest)},"
            f" {group['tickets']} tickets{flag}")
