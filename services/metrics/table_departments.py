"""The departments of the routing table in force (the store's version, or the file before
any was stored), read with the router's parser (`RoutingTable.departments`): the stats
API knows a department the table names even before it has a ticket (departments.py).

The table changes while the service runs (an upload through the router's API), so it is
read at each ask, and parsed again only when its text changed: reading YAML is the cost,
not the store's one row. A table this service cannot read (one the router refuses too, or
one of a newer release) answers None, with a warning once a problem: the stats API then
answers for any department, as it did before it knew the table."""

from __future__ import annotations

import logging
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.core import config_files
from services.router import table_file

logger = logging.getLogger(__name__)


class TableDepartments:
    """service.TableDepartments, against the config store and ROUTING_TABLE_FILE."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], path: Path) -> None:
        self._sessions, self._path = sessions, path
        self._text: str | None = None  # the text `_departments` was read from
        self._departments: frozenset[str] | None = None
        self._warned = ""  # the last problem logged, so that each is logged once

    async def __call__(self) -> frozenset[str] | None:
        try:
            text, source = await table_file.in_force_text(self._sessions, self._path)
        except config_files.ConfigError as exc:  # the file, before any version was stored
            self._warn(exc)
            return None
        if text != self._text:
            try:
                departments: frozenset[str] | None = frozenset(
                    table_file.parse(text, source).departments)
            except config_files.ConfigError as exc:
                self._warn(exc)
                departments = None
            self._text, self._departments = text, departments
        return self._departments

    def _warn(self, error: config_files.ConfigError) -> None:
        if str(error) == self._warned:
            return
        self._warned = str(error)
        logger.warning("routing table in force not read for its departments; the stats API"
                       " answers for any department",
                       extra={"path": str(self._path), "error": str(error)})
