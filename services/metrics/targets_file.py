"""First-response targets read from the routing table file, tolerantly: the metrics
service must start whatever the file holds, so a file it cannot read only costs the
targets' bucket edges, with a warning."""

from __future__ import annotations

import logging
from pathlib import Path

import yaml

from services.metrics import service_levels

logger = logging.getLogger(__name__)


def read_targets(path: Path) -> list[float]:
    """Every first-response target in the file, in seconds; [] if it cannot be read."""
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        logger.warning("routing table not read for first-response targets; default buckets",
                       extra={"path": str(path), "error": type(exc).__name__})
        return []
    seconds, unreadable = service_levels.targets_in(document)
    if unreadable:
        logger.warning("first-response targets not understood", extra={
            "path": str(path), "values": unreadable[:10]})
    return seconds


def response_buckets(path: Path) -> tuple[float, ...]:
    return service_levels.bucket_edges(service_levels.DEFAULT_RESPONSE_BUCKETS,
                                       read_targets(path))
