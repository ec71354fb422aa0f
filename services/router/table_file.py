"""Reading the routing table from its YAML file."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.core import config_files, config_store
from services.router import routing, table_parsing


def load(path: Path) -> routing.RoutingTable:
    return parse(config_files.read_text(path), str(path))


def parse(text: str, source: str) -> routing.RoutingTable:
    document = config_files.load_yaml(source, text)
    return table_parsing.parse_table(document, source=source,
                                     version=config_files.file_version(source, document, text))


async def in_force(sessions: async_sessionmaker[AsyncSession], path: Path
                   ) -> routing.RoutingTable:
    """The routing table in force, for a command outside the services: the store's
    version, or the file's before any was kept (ConfigError if it cannot be read)."""
    table, _source = await in_force_and_source(sessions, path)
    return table


async def in_force_and_source(sessions: async_sessionmaker[AsyncSession], path: Path
                              ) -> tuple[routing.RoutingTable, str]:
    """The routing table in force (`in_force`) and where it was read, for a command to
    say: the store's version (`routing.yaml version #3`), or the file's path."""
    text, source = await in_force_text(sessions, path)
    return parse(text, source), source


async def in_force_text(sessions: async_sessionmaker[AsyncSession], path: Path
                        ) -> tuple[str, str]:
    """The text of the routing table in force and the source its errors name
    (config_store.in_force_text). For a reader outside the router that parses it only
    when it changed."""
    return await config_store.in_force_text(sessions, config_store.ROUTING_TABLE, path)
