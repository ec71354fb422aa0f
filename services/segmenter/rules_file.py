"""Reading a segment rule set from its YAML file (or uploaded text)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from services.core import config_files, versions
from services.segmenter import context, rules


def parse(text: str, *, source: str) -> rules.RuleSet:
    document = config_files.load_yaml(source, text)
    return rules.parse_rule_set(
        document, source=source,
        version=versions.content_version(document.get("version"), text),
        probes=context.probes(datetime.now(UTC).date()))


def load(path: Path) -> rules.RuleSet:
    return parse(config_files.read_text(path), source=str(path))
