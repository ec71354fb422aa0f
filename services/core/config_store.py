"""The versions of the configuration people edit (segment rules, routing table) in the
SQL store: every version put in force is kept, with who put it in force (the credential),
when and why; one of each kind is in force, and every instance follows it.

Putting a version in force is serialised per kind (an advisory lock on PostgreSQL; on
SQLite the first statement takes the write lock), so two admins at once leave a history
in one order and exactly one version in force. A change made on the strength of a
version read before (HTTP's If-Match) is checked against the version in force inside that
same transaction, so of two admins who read one version only the first one's change is
put in force; the other is told which version is in force now (NotInForce)."""

from __future__ import annotations

import difflib
import hashlib
import zlib
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Select, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.core import config_files, db, versions
from services.core.fleet_models import ConfigVersionRow

SEGMENT_RULES = "segment_rules"
ROUTING_TABLE = "routing_table"
KINDS = (SEGMENT_RULES, ROUTING_TABLE)


@dataclass(frozen=True)
class ConfigVersion:
    version_id: int
    kind: str
    version: str
    text: str
    sha256: str
    author: str
    comment: str
    created_at: datetime
    in_force: bool


@dataclass(frozen=True)
class Candidate:
    """A validated configuration text about to be put in force, and why."""

    text: str
    version: str  # as its parser names it (the `version:` label and a digest)
    author: str
    comment: str = ""


class NotInForce(Exception):
    """A change made on the strength of versions of which none is in force any more
    (an admin's If-Match): nothing was put in force."""

    def __init__(self, in_force: ConfigVersion | None) -> None:
        super().__init__("the version the change was made on is not in force"
                         + ("" if in_force is None else f"; #{in_force.version_id} is"))
        self.in_force = in_force


def sha256_of(text_: str) -> str:
    return hashlib.sha256(text_.encode()).hexdigest()


def unified_diff(older: ConfigVersion, newer: ConfigVersion) -> str:
    """What changed from one version's text to another's, as a unified diff."""
    return text_diff(older.text, newer.text, f"#{older.version_id} {older.version}",
                     f"#{newer.version_id} {newer.version}")


def text_diff(older: str, newer: str, older_name: str, newer_name: str) -> str:
    return "".join(difflib.unified_diff(
        older.splitlines(keepends=True), newer.splitlines(keepends=True),
        fromfile=older_name, tofile=newer_name))


async def in_force_text(sessions: async_sessionmaker[AsyncSession], kind: str, path: Path
                        ) -> tuple[str, str]:
    """For a reader outside the services (a command, the metrics service), the text of
    the `kind` in force and the source its errors name: the store's version, as the
    services serve it, or the file's (the seed) before any was kept (ConfigError if it
    cannot be read)."""
    stored = await ConfigVersions(sessions, kind).in_force()
    if stored is None:
        return config_files.read_text(path), str(path)
    return stored.text, f"{path.name} version #{stored.version_id}"


def credential_author(credential_id: str, role: str) -> str:
    """How a version names the credential that put it in force (no token, no secret)."""
    return f"{role} credential {credential_id}"


def _shown(row: ConfigVersionRow) -> ConfigVersion:
    return ConfigVersion(version_id=row.version_id, kind=row.kind, version=row.version,
                         text=row.text, sha256=row.sha256, author=row.author,
                         comment=row.comment, created_at=row.created_at, in_force=row.in_force)


class ConfigVersions:
    """The versions of one kind of configuration."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], kind: str) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown configuration kind {kind!r}")
        self._sessions = sessions
        self.kind = kind

    async def in_force(self) -> ConfigVersion | None:
        async with self._sessions() as session:
            row = await session.scalar(self._in_force_query())
        return None if row is None else _shown(row)

    async def in_force_id(self) -> int | None:
        """The id of the version in force: what the periodic check compares, cheaply."""
        async with self._sessions() as session:
            found: int | None = await session.scalar(
                select(ConfigVersionRow.version_id).where(
                    ConfigVersionRow.kind == self.kind, ConfigVersionRow.in_force)
                .order_by(ConfigVersionRow.version_id.desc()).limit(1))
        return found

    async def get(self, version_id: int) -> ConfigVersion | None:
        async with self._sessions() as session:
            row = await session.get(ConfigVersionRow, version_id)
        return None if row is None or row.kind != self.kind else _shown(row)

    async def history(self, *, limit: int = 50,
                      before: int | None = None) -> Sequence[ConfigVersion]:
        """Newest first; `before` (a version id) pages on."""
        query = select(ConfigVersionRow).where(ConfigVersionRow.kind == self.kind)
        if before is not None:
            query = query.where(ConfigVersionRow.version_id < before)
        query = query.order_by(ConfigVersionRow.version_id.desc()).limit(limit)
        async with self._sessions() as session:
            return [_shown(row) for row in (await session.scalars(query)).all()]

    async def known_id(self, text_: str) -> int | None:
        """The newest version with this text, if it was ever put in force (a file edited
        since was not): the one to roll back to."""
        async with self._sessions() as session:
            found: int | None = await session.scalar(
                select(ConfigVersionRow.version_id).where(
                    ConfigVersionRow.kind == self.kind,
                    ConfigVersionRow.sha256 == sha256_of(text_))
                .order_by(ConfigVersionRow.version_id.desc()).limit(1))
        return found

    async def put_in_force(self, candidate: Candidate, *,
                           if_in_force: Collection[int] | None = None,
                           ) -> tuple[ConfigVersion, bool]:
        """Put `candidate` in force as a new version, kept for good; (version, whether
        anything changed): a text already in force is not recorded again. With
        `if_in_force` (version ids), only while one of them is in force, checked under
        the lock that orders the writers; NotInForce otherwise, and nothing changes."""
        digest = sha256_of(candidate.text)
        async with self._sessions() as session, session.begin():
            await self._lock(session)
            current = await session.scalar(self._in_force_query())
            if if_in_force is not None and (current is None
                                            or current.version_id not in if_in_force):
                raise NotInForce(None if current is None else _shown(current))
            if current is not None and current.sha256 == digest:
                return _shown(current), False
            await session.execute(update(ConfigVersionRow).where(
                ConfigVersionRow.kind == self.kind, ConfigVersionRow.in_force)
                .values(in_force=False))
            row = ConfigVersionRow(
                kind=self.kind, version=candidate.version[:versions.MAX_VERSION],
                text=candidate.text, sha256=digest,
                author=candidate.author[:versions.MAX_AUTHOR],
                comment=candidate.comment[:versions.MAX_COMMENT], created_at=datetime.now(UTC),
                in_force=True)
            session.add(row)
            await session.flush()
            return _shown(row), True

    async def _lock(self, session: AsyncSession) -> None:
        if session.get_bind().dialect.name == "postgresql":
            await session.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                                  {"key": zlib.crc32(f"config_versions:{self.kind}".encode())})
        # SQLite: its write lock, taken by writing in_force onto the rows in force.
        await db.hold_store(session, ConfigVersionRow.in_force,
                            (ConfigVersionRow.kind == self.kind) & ConfigVersionRow.in_force)

    def _in_force_query(self) -> Select[ConfigVersionRow]:
        return (select(ConfigVersionRow)
                .where(ConfigVersionRow.kind == self.kind, ConfigVersionRow.in_force)
                .order_by(ConfigVersionRow.version_id.desc()).limit(1))
