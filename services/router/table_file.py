"""Reading the routing table from its YAML file."""

from __future__ import annotations

from pathlib import Path

from services.core import config_files, versions
from services.router import routing


def load(path: Path) -> routing.RoutingTable:
    text = config_files.read_text(path)
    document = config_files.load_yaml(path, text)
    version = versions.content_version(document.get("version"), text)
    return routing.parse_table(document, source=str(path), version=version)
