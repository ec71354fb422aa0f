"""The segment rule set in force, hot-reloaded (see services/core/live_config.py)."""

from __future__ import annotations

from pathlib import Path

from services.core.live_config import LiveConfig
from services.segmenter import rules, rules_file

LiveRuleSet = LiveConfig[rules.RuleSet]


def live_rule_set(path: Path) -> LiveRuleSet:
    return LiveConfig("segment_rules", path,
                      lambda text, source: rules_file.parse(text, source=source))
