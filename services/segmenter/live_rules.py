"""The rule set in force, replaced without a restart when its file changes or a new one
is uploaded. An invalid rule set never replaces a valid one: it is reported (API, logs)
and the previous version keeps serving."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import watchfiles
from prometheus_client import Counter, Gauge

from services.core import config_files
from services.segmenter import rules, rules_file

logger = logging.getLogger(__name__)

RELOADS = Counter("routing_segment_rules_reloads_total",
                  "Attempts to replace the segment rule set, by outcome", ["outcome"])
RULES_INFO = Gauge("routing_segment_rules_loaded_timestamp_seconds",
                   "When the segment rule set in force was loaded")


@dataclass(frozen=True)
class Rejection:
    source: str
    error: str
    at: datetime


class LiveRuleSet:
    def __init__(self, path: Path) -> None:
        self.path = path.resolve()
        self.current: rules.RuleSet = rules_file.load(path)
        self.loaded_at = datetime.now(UTC)
        self.last_rejection: Rejection | None = None
        RULES_INFO.set(self.loaded_at.timestamp())

    def replace(self, text: str, *, source: str) -> rules.RuleSet:
        """Validate `text`; put it in force if valid, raise ConfigError if not."""
        try:
            candidate = rules_file.parse(text, source=source)
        except config_files.ConfigError as exc:
            self.last_rejection = Rejection(source, str(exc), datetime.now(UTC))
            RELOADS.labels("rejected").inc()
            logger.error("segment rules rejected; the previous version keeps serving",
                         extra={"error": str(exc), "serving": self.current.version})
            raise
        if candidate.version != self.current.version:
            self.current, self.loaded_at = candidate, datetime.now(UTC)
            self.last_rejection = None
            RELOADS.labels("replaced").inc()
            RULES_INFO.set(self.loaded_at.timestamp())
            logger.info("segment rules replaced", extra={"version": candidate.version})
        return self.current

    def upload(self, text: str) -> rules.RuleSet:
        """Put an uploaded rule set in force and write it to the rules file, so that the
        file stays the one source (other instances watching it follow)."""
        rule_set = self.replace(text, source=f"{self.path} (upload)")
        descriptor, staging = tempfile.mkstemp(dir=self.path.parent, suffix=".upload")
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
        Path(staging).replace(self.path)
        return rule_set

    async def watch(self, stop: asyncio.Event) -> None:
        """Reload whenever the rules file changes (editors replace it, so the folder is
        watched)."""
        async for _changes in watchfiles.awatch(
                self.path.parent, stop_event=stop, debounce=200, step=50,
                watch_filter=lambda _change, changed: Path(changed) == self.path):
            # A rejection is reported by replace(); the previous version serves on.
            with contextlib.suppress(config_files.ConfigError):
                self.replace(config_files.read_text(self.path), source=str(self.path))
