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


class NotWritable(Exception):
    """A valid upload that could not be written to its file (read-only mount, permission,
    disk full): nothing was changed, the version in force stays."""

    code = "config_not_writable"

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"the {name.replace('_', ' ')} file cannot be written ({problem});"
                         " nothing was changed and the version in force keeps serving")
        self.problem = problem


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
        self._put_in_force(self._validated(text, source=source))
        return self.current

    def upload(self, text: str) -> Config:
        """Validate an uploaded version, write it to the file (so that the file stays the
        one source: other instances watching it follow), then put it in force. Raises
        ConfigError if it is invalid, NotWritable if the file cannot be written; either
        way the version in force stays."""
        source = f"{self.path} (upload)"
        candidate = self._validated(text, source=source)
        try:
            self._write(text)
        except OSError as exc:
            problem = exc.strerror or type(exc).__name__
            self.last_rejection = Rejection(source, f"not written: {problem}",
                                            datetime.now(UTC))
            RELOADS.labels(self.name, "not_written").inc()
            logger.error("%s upload not written; the previous version keeps serving",
                         self.name, extra={"error": problem, "serving": self.current.version})
            raise NotWritable(self.name, problem) from exc
        self._put_in_force(candidate)
        return self.current

    def _validated(self, text: str, *, source: str) -> Config:
        try:
            return self._parse(text, source)
        except config_files.ConfigError as exc:
            self.last_rejection = Rejection(source, str(exc), datetime.now(UTC))
            RELOADS.labels(self.name, "rejected").inc()
            logger.error("%s rejected; the previous version keeps serving", self.name,
                         extra={"error": str(exc), "serving": self.current.version})
            raise

    def _put_in_force(self, candidate: Config) -> None:
        if candidate.version != self.current.version:
            self.current, self.loaded_at = candidate, datetime.now(UTC)
            self.last_rejection = None
            RELOADS.labels(self.name, "replaced").inc()
            LOADED.labels(self.name).set(self.loaded_at.timestamp())
            logger.info("%s replaced", self.name, extra={"version": candidate.version})

    def _write(self, text: str) -> None:
        """Replace the file in one step: a reader sees the old file or the new, whole."""
        descriptor, staging = tempfile.mkstemp(dir=self.path.parent, suffix=".upload")
        try:
            with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            Path(staging).replace(self.path)
        except BaseException:
            Path(staging).unlink(missing_ok=True)
            raise

    async def watch(self, stop: asyncio.Event) -> None:
        """Reload whenever the file changes (editors replace it, so the folder is
        watched). Started again after a failure, it first catches up with the file."""
        self._reload_file()
        async for _changes in watchfiles.awatch(
                self.path.parent, stop_event=stop, debounce=200, step=50,
                watch_filter=lambda _change, changed: Path(changed) == self.path):
            self._reload_file()

    def _reload_file(self) -> None:
        # A rejection is reported by replace(); the previous version serves on.
        with contextlib.suppress(config_files.ConfigError):
            self.replace(config_files.read_text(self.path), source=str(self.path))
