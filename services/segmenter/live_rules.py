"""The segment rule set in force, governed in the SQL store and hot-reloaded (see
services/core/live_config.py)."""

from __future__ import annotations

from pathlib import Path

from services.core import config_store
from services.core.live_config import LiveConfig
from services.segmenter import rule_failures, rules, rules_file

LiveRuleSet = LiveConfig[rules.RuleSet]


def live_rule_set(path: Path) -> LiveRuleSet:
    return LiveConfig(config_store.SEGMENT_RULES, path,
                      lambda text, source: rules_file.parse(text, source=source),
                      in_force=rule_failures.export)
