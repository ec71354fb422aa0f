"""First-response targets of the routing table in force (the store's version, or the
file before any was stored), read with the router's own parser: the metrics service's
bucket edges are the targets the router routes by. The metrics service must start
whatever the table holds, so a table it cannot read (one the router refuses too, or one
of a newer release) only costs the targets' bucket edges, with a warning."""

from __future__ import annotations

import logging
from pathlib import Path

from services.core import config_files
from services.metrics import service_levels
from services.router import table_file

logger = logging.getLogger(__name__)


def read_targets(path: Path, text: str | None = None) -> list[float]:
    """Every first-response target of the table `text` (the file at `path` if None; the
    path names it in errors), in seconds; [] if it cannot be read."""
    try:
        table = table_file.parse(config_files.read_text(path) if text is None else text,
                                 str(path))
    except config_files.ConfigError as exc:
        logger.warning("routing table not read for first-response targets; default buckets",
                       extra={"path": str(path), "error": str(exc)})
        return []
    return sorted({override.first_response_target.total_seconds()
                   for override in table.overrides
                   if override.first_response_target is not None})


def response_buckets(path: Path, in_force: str | None = None) -> tuple[float, ...]:
    """The bucket edges for the table in force: `in_force` (the store's version's text),
    or the file at `path` when none is stored yet."""
    return service_levels.bucket_edges(service_levels.DEFAULT_RESPONSE_BUCKETS,
                                       read_targets(path, in_force))
