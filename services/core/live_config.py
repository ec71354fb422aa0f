"""A configuration file in force (segment rules, routing table), replaced without a
restart when the file changes or a new version is uploaded. An invalid version never
replaces a valid one: it is reported (API, logs) and the previous version keeps serving."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Generic, Protocol, TypeVar

import watchfiles
from prometheus_client import Counter, Gauge

from services.core import config_files

logger = logging.getLogger(__name__)

RELOADS = Counter("routing_config_reloads_total",
                  "Attempts to replace a configuration file in force, by outcome",
                  ["config", "outcome"])
LOADED = Gauge("routing_config_loaded_timestamp_seconds",
               "When the configuration in force was loaded", ["config"])


class Versioned(Protocol):
    @property
    def version(self) -> str: ...


Config = TypeVar("Config", bound=Versioned)


@dataclass(frozen=True)
class Rejection:
    source: str
    error: str
    at: datetime


class LiveConfig(Generic[Config]):
    def __init__(self, name: str, path: Path,
                 parse: Callable[[str, str], Config]) -> None:
        self.name = name
        self.path = path.resolve()
        self._parse = parse
        self.current: Config = parse(config_files.read_text(self.path), str(self.path))
        self.loaded_at = datetime.now(UTC)
        self.last_rejection: Rejection | None = None
        LOADED.labels(name).set(self.loaded_at.timestamp())

    def replace(self, text: str, *, source: str) -> Config:
        """Validate `text`; put it in force if valid, raise ConfigError if not."""
        try:
            candidate = self._parse(text, source)
        except config_files.ConfigError as exc:
            self.last_rejection = Rejection(source, str(exc), datetime.now(UTC))
            RELOADS.labels(self.name, "rejected").inc()
            logger.error("%s rejected; the previous version keeps serving", self.name,
                         extra={"error": str(exc), "serving": self.current.version})
            raise
        if candidate.version != self.current.version:
            self.current, self.loaded_at = candidate, datetime.now(UTC)
            self.last_rejection = None
            RELOADS.labels(self.name, "replaced").inc()
            LOADED.labels(self.name).set(self.loaded_at.timestamp())
            logger.info("%s replaced", self.name, extra={"version": candidate.version})
        return self.current

    def upload(self, text: str) -> Config:
        """Put an uploaded version in force and write it to the file, so that the file
        stays the one source (other instances watching it follow)."""
        in_force = self.replace(text, source=f"{self.path} (upload)")
        descriptor, staging = tempfile.mkstemp(dir=self.path.parent, suffix=".upload")
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
        Path(staging).replace(self.path)
        return in_force

    async def watch(self, stop: asyncio.Event) -> None:
        """Reload whenever the file changes (editors replace it, so the folder is
        watched)."""
        async for _changes in watchfiles.awatch(
                self.path.parent, stop_event=stop, debounce=200, step=50,
                watch_filter=lambda _change, changed: Path(changed) == self.path):
            # A rejection is reported by replace(); the previous version serves on.
            with contextlib.suppress(config_files.ConfigError):
                self.replace(config_files.read_text(self.path), source=str(self.path))
