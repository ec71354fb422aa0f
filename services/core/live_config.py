"""A configuration in force (segment rules, routing table), governed in the SQL store
(services/core/config_store.py) and replaced without a restart.

The store holds every version put in force and says which one is; each instance follows
it: at start, on an announcement on Kafka (services/core/config_changes.py), and by a
periodic check of the store in case an announcement was missed. The file is the seed
and an import path: on first start it is the first version; a file whose text was never
in force (edited while the service was down, or while it runs) is put in force as a new
version, and one whose text was in force before is not (touching or re-saving the file
never undoes an upload; the rollback API puts an earlier version back). Uploads go to
the store only and never write the file, so a read-only file (a Docker or Kubernetes
mount) is no obstacle. An invalid version never replaces a valid one: it is reported
(API, logs) and the previous version keeps serving; so is a file that cannot be used at
start (invalid, unreadable, missing) when the store has a version to serve, and only
with none does it stop the start."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

import watchfiles
from prometheus_client import Counter, Gauge

from services.core import config_files, config_store

logger = logging.getLogger(__name__)

RELOADS = Counter("routing_config_reloads_total",
                  "Attempts to replace a configuration in force, by outcome",
                  ["config", "outcome"])
LOADED = Gauge("routing_config_loaded_timestamp_seconds",
               "When the configuration in force was loaded", ["config"])
IN_FORCE_REFUSED = Gauge(
    "routing_config_in_force_refused",
    "1 while this instance refuses the version in force in the store (one this release"
    " cannot read) and serves the one before it, or its file: the fleet is split",
    ["config"])

# How often an instance checks the store for a version put in force elsewhere, in case it
# missed the announcement.
CHECK_SECONDS = 5.0


class Versioned(Protocol):
    @property
    def version(self) -> str: ...


Config = TypeVar("Config", bound=Versioned)
Config_contra = TypeVar("Config_contra", bound=Versioned, contravariant=True)
Announce = Callable[[config_store.ConfigVersion], Awaitable[None]]


class NotAdmitted(Exception):
    """A valid candidate refused by an Admission: nothing changed; `body` says why, as
    the admin is answered (409)."""

    def __init__(self, body: dict[str, Any]) -> None:
        super().__init__(body.get("detail", ""))
        self.body = body


class Admission(Protocol[Config_contra]):
    """Whether a valid candidate may replace the configuration in force, asked of an
    admin's upload and rollback alike (the routing table's: no department holding open
    tickets removed unconfirmed)."""

    async def __call__(self, in_force: Config_contra, candidate: Config_contra) -> None:
        """Refuse `candidate` by raising NotAdmitted."""

    def put_in_force(self, version: config_store.ConfigVersion, *, changed: bool,
                     author: str) -> None:
        """Once the admitted candidate is in force (what to log of it)."""


@dataclass(frozen=True)
class Rejection:
    source: str
    error: str
    at: datetime


class NotGoverned(RuntimeError):
    """Used before `govern` gave it its store: a wiring mistake, not a request's."""


class LiveConfig(Generic[Config]):
    """`in_force` is called with each configuration as it comes in force here (the file's
    at construction, then each version adopted): for what follows the configuration, such
    as the metric series of its parts, exported at 0 before anything counts in them."""

    def __init__(self, name: str, path: Path,
                 parse: Callable[[str, str], Config], *,
                 in_force: Callable[[Config], None] = lambda _config: None) -> None:
        self.name = name
        self.path = path.resolve()
        self._parse = parse
        self._in_force = [in_force]
        # The seed, in force until the store has been read. A file that cannot be used is
        # held against it until govern() knows whether the store has a version instead.
        self._current: Config | None = None
        self._current_text = ""  # the text `_current` was read from
        self._unusable_file: config_files.ConfigError | None = None
        try:
            text = config_files.read_text(self.path)
            self._current, self._current_text = parse(text, str(self.path)), text
        except config_files.ConfigError as exc:
            self._unusable_file = exc
        else:
            in_force(self._current)
        self.loaded_at = datetime.now(UTC)
        self.last_rejection: Rejection | None = None
        self.version_id: int | None = None  # the store's id of the version served here
        # The store's latest version in force, when this instance refuses it (one its
        # release cannot read), and the one it is reading: each read once.
        self.refused_id: int | None = None
        self._reading: set[int] = set()
        self._versions: config_store.ConfigVersions | None = None
        self._announce: Announce | None = None
        LOADED.labels(name).set(self.loaded_at.timestamp())
        IN_FORCE_REFUSED.labels(name).set(0)

    def also_in_force(self, follower: Callable[[Config], None]) -> None:
        """Call `follower` too with each configuration coming in force here from now on
        (as `in_force` is)."""
        self._in_force.append(follower)

    @property
    def current(self) -> Config:
        """The configuration in force; before the store was read and with a file that
        cannot be used, that file's ConfigError."""
        if self._current is None:
            assert self._unusable_file is not None  # __init__ sets one of the two
            raise self._unusable_file
        return self._current

    @property
    def upload_source(self) -> str:
        """How an uploaded text's errors name it: the file's name, not where the server
        keeps it (a caller learns nothing of the server's directories)."""
        return f"{self.path.name} (upload)"

    def in_force_here(self) -> tuple[Config, str]:
        """The configuration in force and the text it was read from, as one: what a dry
        run compares a candidate with (read apart, the store's text around an await,
        they could be two versions: one put in force elsewhere, not loaded here yet)."""
        return self.current, self._current_text

    @property
    def versions(self) -> config_store.ConfigVersions:
        if self._versions is None:
            raise NotGoverned(f"{self.name}: govern() was not called")
        return self._versions

    async def validate(self, text: str, *, source: str) -> Config:
        """`text` parsed, or ConfigError: a dry run, which changes nothing."""
        return await config_files.parse_off_the_loop(self._parse, text, source)

    async def govern(self, versions: config_store.ConfigVersions, *,
                     announce: Announce) -> None:
        """Follow the store from now on: the file is put in force if its text never was
        (first start: the seed), then the version in force is loaded. A file that cannot
        be used (invalid, unreadable, missing) stops the start, with its ConfigError
        naming file, line and rule, only when the store holds no version yet; otherwise
        it is reported as a rejected change is while running and the store's version
        serves, so a bad edit does not take down a fleet restarting one by one; when that
        version cannot serve either (one this release refuses), the start stops."""
        if versions.kind != self.name:
            raise ValueError(f"{self.name} cannot follow the versions of {versions.kind}")
        self._versions, self._announce = versions, announce
        stored = await versions.in_force_id() is not None
        if stored:
            await self.sync()  # what serves if the file is rejected
        else:  # nothing to serve instead of the file
            await self.validate(config_files.read_text(self.path), source=str(self.path))
        with contextlib.suppress(config_files.ConfigError):  # reported; the store serves
            await self._import_file(comment="the file changed while the service was down"
                                    if stored else "seeded from the file")
        await self.sync()
        if self._current is None:
            # Neither the store's version in force (reported: one this release refuses)
            # nor the file can serve: the start stops, rather than serve nothing.
            assert self._unusable_file is not None  # a usable file would be in force
            raise self._unusable_file

    async def put_in_force(self, text: str, *, source: str, author: str,
                           comment: str = "", by_request: bool = False,
                           if_in_force: Collection[int] | None = None,
                           admit: Admission[Config] | None = None,
                           ) -> tuple[config_store.ConfigVersion, bool]:
        """Validate `text` (ConfigError if invalid: nothing changes), keep it as a new
        version in force, and announce it; (the version, whether anything changed).
        `by_request`: an admin's upload or rollback, whose refusal is answered to them
        (logged as a warning: their mistake, not the service's). `if_in_force`: only
        while one of these versions is in force in the store (config_store.NotInForce,
        after catching up with the store, so that the version read next here is the one
        in force). `admit`: asked with the configuration in force in the store (caught
        up with first: this instance may lag a change made elsewhere) and the valid
        candidate before it is kept (NotAdmitted refuses it), then told it is in force."""
        candidate = await self._validated(text, source=source, by_request=by_request)
        if admit is not None:
            await self.sync()
            await admit(self.current, candidate)
        try:
            version, changed = await self.versions.put_in_force(config_store.Candidate(
                text=text, version=candidate.version, author=author, comment=comment),
                if_in_force=if_in_force)
        except config_store.NotInForce:
            await self.sync()
            raise
        self._adopt(candidate, version.version_id, text)
        if admit is not None:
            admit.put_in_force(version, changed=changed, author=author)
        if changed and self._announce is not None:
            await self._announce(version)
        return version, changed

    async def roll_back(self, version_id: int, *, author: str, comment: str = "",
                        if_in_force: Collection[int] | None = None,
                        admit: Admission[Config] | None = None,
                        ) -> tuple[config_store.ConfigVersion, bool] | None:
        """Put an earlier version in force again, as a new version naming it; None if
        there is no such version, ConfigError if it no longer validates, NotInForce and
        NotAdmitted as put_in_force says."""
        earlier = await self.versions.get(version_id)
        if earlier is None:
            return None
        note = f"rollback to #{version_id}" + (f": {comment}" if comment else "")
        return await self.put_in_force(earlier.text, author=author, comment=note,
                                       source=f"{self.path.name} version #{version_id}",
                                       by_request=True, if_in_force=if_in_force,
                                       admit=admit)

    async def sync(self) -> bool:
        """Catch up with the version in force in the store; whether it changed here.
        Only forward: the store numbers versions in the order they are put in force, and
        a read (of the store, then of the text, on a worker thread) can end after a later
        version came in force here, by an upload or another sync."""
        in_force_id = await self.versions.in_force_id()
        if in_force_id is None or not self._ahead(in_force_id) \
                or in_force_id in self._reading:
            return False
        self._reading.add(in_force_id)
        try:
            version = await self.versions.get(in_force_id)
            if version is None or not self._ahead(in_force_id):
                return False
            try:
                candidate = await self._validated(
                    version.text, source=f"{self.path.name} version #{in_force_id}")
            except config_files.ConfigError:
                # Reported once (_validated); the version served here goes on serving.
                if self._ahead(in_force_id):
                    self.refused_id = in_force_id
                    IN_FORCE_REFUSED.labels(self.name).set(1)
                return False
            if not self._ahead(in_force_id):
                return False
            self._adopt(candidate, in_force_id, version.text)
            return True
        finally:
            self._reading.discard(in_force_id)

    def _ahead(self, version_id: int) -> bool:
        """Whether the store's version `version_id` is later than the one served here,
        and not refused here."""
        return (self.version_id is None or version_id > self.version_id) \
            and version_id != self.refused_id

    async def follow_store(self, stop: asyncio.Event) -> None:
        """Check the store every CHECK_SECONDS: the fallback for a missed announcement."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), CHECK_SECONDS)
            if not stop.is_set():
                await self.sync()

    async def _validated(self, text: str, *, source: str, by_request: bool = False
                         ) -> Config:
        try:
            return await config_files.parse_off_the_loop(self._parse, text, source)
        except config_files.ConfigError as exc:
            self._reject(source, exc, by_request=by_request)
            raise

    def _reject(self, source: str, exc: config_files.ConfigError, *,
                by_request: bool = False) -> None:
        self.last_rejection = Rejection(source, str(exc), datetime.now(UTC))
        RELOADS.labels(self.name, "rejected").inc()
        logger.log(logging.WARNING if by_request else logging.ERROR,
                   "%s rejected; the previous version keeps serving", self.name,
                   extra={"error": str(exc), "serving": None if self._current is None
                          else self._current.version})

    def _adopt(self, candidate: Config, version_id: int, text: str) -> None:
        if self.version_id is not None and version_id < self.version_id:
            # Read while a later version came in force here (the store numbers versions
            # in the order they are put in force): the later one stays.
            return
        self.version_id = version_id
        if self.refused_id is None or version_id > self.refused_id:
            # In step with the store again; a version put in force before the one
            # refused (an upload answered late) serves, and that one is still refused.
            self.refused_id = None
            IN_FORCE_REFUSED.labels(self.name).set(0)
        # The text changes with the configuration, so they stay a pair; a version is a
        # digest of its text (config_files.file_version), so a text passed over here for
        # having the version in force is that version's text anyway.
        if self._current is None or candidate.version != self._current.version:
            self._current, self.loaded_at = candidate, datetime.now(UTC)
            self._current_text = text
            for follower in self._in_force:
                follower(candidate)
            self.last_rejection = None
            RELOADS.labels(self.name, "replaced").inc()
            LOADED.labels(self.name).set(self.loaded_at.timestamp())
            logger.info("%s replaced", self.name,
                        extra={"version": candidate.version, "version_id": version_id})

    async def watch(self, stop: asyncio.Event) -> None:
        """Import the file whenever it changes (editors replace it, so the folder is
        watched): a text never in force is put in force as a new version."""
        async for _changes in watchfiles.awatch(
                self.path.parent, stop_event=stop, debounce=200, step=50,
                watch_filter=lambda _change, changed: Path(changed) == self.path):
            # A rejection is reported (_reject); the version in force serves on.
            with contextlib.suppress(config_files.ConfigError):
                await self._import_file()

    async def _import_file(self, *, comment: str = "the file changed") -> None:
        """Put the file's text in force as a new version if it was never in force, at
        start and while running alike: a text in force before (the seed, or one since
        replaced by an upload) is not imported again, or touching the file would undo
        the upload across the fleet. ConfigError if the file cannot be used (reported)."""
        try:
            text = config_files.read_text(self.path)
        except config_files.ConfigError as exc:
            self._reject(str(self.path), exc)
            raise
        known_id = await self.versions.known_id(text)
        if known_id is None:
            await self.put_in_force(text, source=str(self.path),
                                    author=f"file {self.path.name}", comment=comment)
        elif known_id != await self.versions.in_force_id():
            # A warning: the file now says other than what serves (a revert by hand, or a
            # touch after an upload); the admin decides with a rollback.
            logger.warning("%s: the file's text was in force before and is not imported"
                        " again; to put it back in force, roll back to its version",
                        self.name, extra={"file": str(self.path), "version_id": known_id})
