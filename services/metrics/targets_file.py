"""First-response targets read from the routing table in force (the store's version,
or the file before any was stored), tolerantly: the metrics service must start whatever
the table holds, so a table it cannot read only costs the targets' bucket edges, with a
warning."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from services.core import config_files, durations
from services.metrics import service_levels

logger = logging.getLogger(__name__)

TARGET_KEY = "first_response_target"


def read_targets(path: Path, text: str | None = None) -> list[float]:
    """Every first-response target of the table `text` (the file at `path` if None; the
    path names it in errors), in seconds; [] if it cannot be read."""
    try:
        document = config_files.load_yaml(
            path, config_files.read_text(path) if text is None else text)
    except config_files.ConfigError as exc:
        logger.warning("routing table not read for first-response targets; default buckets",
                       extra={"path": str(path), "error": type(exc).__name__})
        return []
    seconds, unreadable = targets_in(document)
    if unreadable:
        logger.warning("first-response targets not understood", extra={
            "path": str(path), "values": unreadable[:10]})
    return seconds


def response_buckets(path: Path, in_force: str | None = None) -> tuple[float, ...]:
    """The bucket edges for the table in force: `in_force` (the store's version's text),
    or the file at `path` when none is stored yet."""
    return service_levels.bucket_edges(service_levels.DEFAULT_RESPONSE_BUCKETS,
                                       read_targets(path, in_force))


def parse_duration(value: object) -> float | None:
    """A target in seconds, read with the routing table's own grammar ('15m', '4h',
    '1h30m'); None if it is not one (the router refuses such a table anyway)."""
    if not isinstance(value, str):
        return None
    try:
        return durations.parse_duration(value).total_seconds()
    except ValueError:
        return None


def target_values(document: Any) -> Iterator[object]:
    """Every `first_response_target` value in a routing table, wherever it stands (per
    route, as a default, under service levels ...): the file's layout is still moving."""
    if isinstance(document, Mapping):
        for key, value in document.items():
            if key == TARGET_KEY:
                if isinstance(value, Mapping):  # e.g. per tier: {most_valuable: 15m, ...}
                    yield from value.values()
                else:
                    yield value
            else:
                yield from target_values(value)
    elif isinstance(document, list):
        for item in document:
            yield from target_values(item)


def targets_in(document: Any) -> tuple[list[float], list[str]]:
    """(target seconds, values that could not be read) of a routing table document."""
    seconds: list[float] = []
    unreadable: list[str] = []
    for value in target_values(document):
        parsed = parse_duration(value)
        if parsed is None:
            unreadable.append(repr(value)[:40])
        else:
            seconds.append(parsed)
    return seconds, unreadable
