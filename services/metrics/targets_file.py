"""First-response targets of the routing table in force (the store's version, or the
file before any was stored), read with the router's own parser: the metrics service's
bucket edges are the targets the router routes by. The metrics service must start
whatever the table holds, so a table it cannot read (one the router refuses too, or one
of a newer release) only costs the targets' bucket edges, with a warning."""

from __future__ import annotations

import logging
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.core import config_files
from services.metrics import service_levels
from services.router import table_file

logger = logging.getLogger(__name__)


async def response_buckets(sessions: async_sessionmaker[AsyncSession], path: Path
                           ) -> tuple[float, ...]:
    """The bucket edges for the table in force, read as every reader outside the router
    reads it (`table_file.in_force_text`: the store's version, or the file at `path`
    before any was stored)."""
    try:
        text, source = await table_file.in_force_text(sessions, path)
    except config_files.ConfigError as exc:  # the file, before any version was stored
        _warn(path, exc)
        return service_levels.DEFAULT_RESPONSE_BUCKETS
    return service_levels.bucket_edges(service_levels.DEFAULT_RESPONSE_BUCKETS,
                                       targets(text, source, path=path))


def targets(text: str, source: str, *, path: Path) -> list[float]:
    """Every first-response target of the table `text` (`source` names it in errors), in
    seconds; [] if it cannot be read."""
    try:
        table = table_file.parse(text, source)
    except config_files.ConfigError as exc:
        _warn(path, exc)
        return []
    return sorted({override.first_response_target.total_seconds()
                   for override in table.overrides
                   if override.first_response_target is not None})


def _warn(path: Path, error: config_files.ConfigError) -> None:
    logger.warning("routing table not read for first-response targets; default buckets",
                   extra={"path": str(path), "error": str(error)})
