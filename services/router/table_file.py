"""Reading the routing table from its YAML file."""

from __future__ import annotations

from pathlib import Path

from services.core import config_files
from services.router import routing, table_parsing


def load(path: Path) -> routing.RoutingTable:
    return parse(config_files.read_text(path), str(path))


def parse(text: str, source: str) -> routing.RoutingTable:
    document = config_files.load_yaml(source, text)
    return table_parsing.parse_table(document, source=source,
                                     version=config_files.file_version(source, document, text))
