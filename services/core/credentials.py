"""Credentials in the SQL store: issued, listed, changed, revoked, and checked on each
request.

Every service reads the same table, so a credential issued, changed or revoked on one
(through the router's admin API or the `routing credentials` command) holds on all of
them without a restart, within `AUTH_CACHE_SECONDS` (each service keeps what it looked up
that long; the one that changes it forgets it at once).
While the store is down, the intake goes by what it last read of a platform's key, so it
keeps accepting tickets from the platforms it knows (a key revoked during the outage
works until the store is back); department and admin tokens are not trusted on an old
read (503). A key once seen revoked or gone is never trusted again on an older read.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from cachetools import LRUCache, TTLCache
from pydantic import BaseModel, ConfigDict
from sqlalchemy import String, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Mapped, mapped_column

from services.core import access, admin_actions, db
from services.core.db import Base

_NOT_CACHED = object()  # a credential not in the cache (None: cached as unknown)


MAX_LABEL = 200  # what a credential is for, in words
MAX_RATE = 32  # a credential's own rate, or budget of body bytes, as written
# What an admin may change of a credential; its role and subject are fixed (a new
# credential is issued for another).
CHANGEABLE = ("label", "rate_limit", "byte_rate_limit")
LIMITS = ("rate_limit", "byte_rate_limit")  # a credential's own, else the service's default


class CredentialRow(Base):
    __tablename__ = "credentials"

    credential_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    role: Mapped[str] = mapped_column(String(16))
    subject: Mapped[str | None] = mapped_column(String(access.MAX_SUBJECT), index=True)
    label: Mapped[str] = mapped_column(String(MAX_LABEL))
    secret_hash: Mapped[str] = mapped_column(String(64))
    rate_limit: Mapped[str | None] = mapped_column(String(MAX_RATE))
    byte_rate_limit: Mapped[str | None] = mapped_column(String(MAX_RATE))
    created_at: Mapped[datetime] = mapped_column(db.UtcDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(db.UtcDateTime())


class Credential(BaseModel):
    """A credential as shown to operators: never its secret nor its hash."""

    model_config = ConfigDict(frozen=True)

    credential_id: str
    role: access.Role
    subject: str | None
    label: str
    rate_limit: str | None
    byte_rate_limit: str | None
    created_at: datetime
    revoked_at: datetime | None


def _shown(row: CredentialRow) -> Credential:
    return Credential(credential_id=row.credential_id, role=access.Role(row.role),
                      subject=row.subject, label=row.label, rate_limit=row.rate_limit,
                      byte_rate_limit=row.byte_rate_limit,
                      created_at=row.created_at, revoked_at=row.revoked_at)


def limits_said(limits: Mapping[str, str | None]) -> str:
    """A credential's own limits given at issue, as its admin action records them (limits
    are no personal data): `rate_limit 200/second, byte_rate_limit 16MiB/second`."""
    return ", ".join(f"{name} {limits[name]}" for name in LIMITS if limits.get(name))


def change_said(before: Credential, changes: Mapping[str, str | None]) -> str:
    """What `changes` change of `before`, as its admin action records it: each limit
    before and after (`default`: the service's), and that the label changed, never what
    it says (free text: an admin may have written a name in it); "" if nothing."""
    said = []
    for name in CHANGEABLE:
        if name not in changes or changes[name] == getattr(before, name):
            continue
        if name == "label":
            said.append("label changed")
        else:
            said.append(f"{name} {getattr(before, name) or 'default'}"
                        f" -> {changes[name] or 'default'}")
    return ", ".join(said)


@dataclass(frozen=True)
class Revoked:
    """A credential that cannot be changed: it is revoked (a new one is issued)."""

    credential: Credential

    @property
    def problem(self) -> str:
        return (f"credential {self.credential.credential_id!r} is revoked: issue a new one"
                " with the label and limits wanted")


@dataclass(frozen=True)
class _Looked:
    """What a service remembers of a credential it looked up (no secret)."""

    secret_hash: str
    principal: access.Principal | None  # None: revoked


class Credentials:
    # The longest a read of a credential is waited for: a read that hangs (a connection
    # half open after a network failure) is shared by every request for that key, so it
    # fails as an outage would, and the intake goes by what it last read (as the
    # store's connect timeout).
    READ_SECONDS = db.CONNECT_SECONDS

    def __init__(self, sessions: async_sessionmaker[AsyncSession], *,
                 cache_seconds: float = 5.0, read_seconds: float = READ_SECONDS) -> None:
        self._sessions = sessions
        self._read_seconds = read_seconds
        self._looked: TTLCache[str, _Looked | None] = TTLCache(maxsize=10_000,
                                                               ttl=cache_seconds)
        # Platforms' valid keys, for store outages: the intake goes on with them, while
        # other roles' tokens are not trusted on an old read. None: seen revoked or gone,
        # kept so that no older read (one still under way, say) brings the key back.
        self._last_read: LRUCache[str, _Looked | None] = LRUCache(maxsize=10_000)
        # The reads under way, by credential: requests that find a credential's entry
        # expired share one read, rather than each reading the store at once (at some
        # hundreds of requests a second, every few seconds, a burst of reads each waiting
        # for a connection of its own).
        self._reading: dict[str, asyncio.Future[_Looked | None]] = {}

    async def issue(self, role: access.Role, subject: str | None, *, label: str = "",
                    rate_limit: str | None = None, byte_rate_limit: str | None = None,
                    actor: str = admin_actions.COMMAND_LINE) -> tuple[Credential, str]:
        """A new credential and its token: the only time the token is shown. Recorded as
        `actor`'s action (an admin's credential through the API)."""
        issued = access.new_token()
        row = CredentialRow(credential_id=issued.credential_id, role=role.value,
                            subject=subject, label=label, secret_hash=issued.secret_hash,
                            rate_limit=rate_limit, byte_rate_limit=byte_rate_limit,
                            created_at=datetime.now(UTC), revoked_at=None)
        async with self._sessions() as session, session.begin():
            session.add(row)
            admin_actions.record(session, admin_actions.Done(
                admin_actions.Action.CREDENTIAL_ISSUED, issued.credential_id, actor,
                ", ".join(said for said in (
                    f"role {role.value}", f"subject {subject}" if subject else "",
                    limits_said({"rate_limit": rate_limit,
                                 "byte_rate_limit": byte_rate_limit})) if said)))
        return _shown(row), issued.token

    async def listed(self, *, role: access.Role | None = None,
                     subject: str | None = None) -> Sequence[Credential]:
        query = select(CredentialRow).order_by(CredentialRow.created_at)
        if role is not None:
            query = query.where(CredentialRow.role == role.value)
        if subject is not None:
            query = query.where(CredentialRow.subject == subject)
        async with self._sessions() as session:
            return [_shown(row) for row in (await session.scalars(query)).all()]

    async def change(self, credential_id: str, changes: Mapping[str, str | None], *,
                     actor: str = admin_actions.COMMAND_LINE) -> Credential | Revoked | None:
        """Change a credential's label or own limits (`changes`: of CHANGEABLE, a limit
        None for the service's default; what is left out stays), recorded as `actor`'s
        action if anything changed. This service forgets what it read of it at once, as
        on a revocation; the others read it again when their entry expires, within
        AUTH_CACHE_SECONDS. None if there is no such credential; Revoked if it is."""
        wrong = set(changes) - set(CHANGEABLE)
        if changes.get("label", "") is None:
            wrong.add("label")
        if wrong:  # named, never their values (a label may hold a name)
            raise ValueError(f"not changeable so: {', '.join(sorted(wrong))}")
        async with self._sessions() as session, session.begin():
            row = await db.get_held(session, CredentialRow, credential_id)
            if row is None:
                return None
            before = _shown(row)
            if row.revoked_at is not None:
                return Revoked(before)
            said = change_said(before, changes)
            if not said:
                return before
            for name, value in changes.items():
                setattr(row, name, value)
            admin_actions.record(session, admin_actions.Done(
                admin_actions.Action.CREDENTIAL_CHANGED, credential_id, actor, said))
            await session.flush()
            changed = _shown(row)
        self._looked.pop(credential_id, None)
        self._reading.pop(credential_id, None)  # a read under way keeps nothing
        return changed

    async def revoke(self, credential_id: str, *, actor: str = admin_actions.COMMAND_LINE
                     ) -> Credential | None:
        """Revoke a credential (kept, marked revoked), recorded as `actor`'s action; None
        if there is no such one."""
        async with self._sessions() as session, session.begin():
            revoked = await session.execute(
                update(CredentialRow)
                .where(CredentialRow.credential_id == credential_id,
                       CredentialRow.revoked_at.is_(None))
                .values(revoked_at=datetime.now(UTC)))
            if revoked.rowcount:  # type: ignore[attr-defined]  # a CursorResult's
                admin_actions.record(session, admin_actions.Done(
                    admin_actions.Action.CREDENTIAL_REVOKED, credential_id, actor))
            row = await session.get(CredentialRow, credential_id)
        self._looked.pop(credential_id, None)
        self._reading.pop(credential_id, None)  # a read under way keeps nothing
        if row is not None:
            self._last_read[credential_id] = None  # revoked: final
        return None if row is None else _shown(row)

    async def authenticate(self, token: str) -> access.Principal | None:
        """The principal a token stands for, or None (malformed, unknown, revoked or a
        wrong secret)."""
        parts = access.split_token(token)
        if parts is None:
            return None
        credential_id, secret = parts
        # One read of the cache: an entry may expire between a membership test and a read
        # (cachetools' own `get` tests, then reads).
        try:
            cached: object = self._looked[credential_id]
        except KeyError:
            cached = _NOT_CACHED
        looked: _Looked | None
        if isinstance(cached, _Looked) or cached is None:
            looked = cached
        else:
            try:
                looked = await self._read(credential_id)
            except db.STORE_ERRORS as error:
                if not db.is_outage(error) or credential_id not in self._last_read:
                    raise
                # The store is down: a platform's key as last read (None: revoked).
                looked = self._last_read[credential_id]
        if looked is None or not access.secret_matches(secret, looked.secret_hash):
            return None
        return looked.principal

    def _remember(self, credential_id: str, looked: _Looked | None) -> None:
        """Keep a successful read for store outages: a platform's valid key, or that a
        key is revoked or gone, which is final."""
        if looked is None or looked.principal is None:
            # An unknown id is kept only once it was valid: anyone can make ids up.
            if looked is not None or credential_id in self._last_read:
                self._last_read[credential_id] = None
        elif looked.principal.role is access.Role.PLATFORM:
            seen_revoked = credential_id in self._last_read and \
                self._last_read[credential_id] is None
            if not seen_revoked:
                self._last_read[credential_id] = looked

    def _read(self, credential_id: str) -> asyncio.Future[_Looked | None]:
        """The credential as the store has it, and kept: read once for all the requests
        that ask while the read is under way (shielded, so that a request that goes away
        leaves the read to the others)."""
        reading = self._reading.get(credential_id)
        if reading is None or reading.get_loop() is not asyncio.get_running_loop():
            reading = self._reading[credential_id] = asyncio.ensure_future(
                self._read_and_keep(credential_id))
            reading.add_done_callback(functools.partial(self._read_done, credential_id))
        return asyncio.shield(reading)

    def _read_done(self, credential_id: str, reading: asyncio.Future[_Looked | None]) -> None:
        if self._reading.get(credential_id) is reading:
            del self._reading[credential_id]
        if not reading.cancelled():
            reading.exception()  # its requests may all have gone: nobody else reads it

    async def _read_and_keep(self, credential_id: str) -> _Looked | None:
        async with asyncio.timeout(self._read_seconds):
            looked = await self._look_up(credential_id)
        # Kept unless the credential was revoked by this service while it was being read:
        # the read may have found it before the revocation (the requests waiting on it are
        # answered as it read; other services refuse the key within their cache's time).
        if self._reading.get(credential_id) is asyncio.current_task():
            self._looked[credential_id] = looked
            self._remember(credential_id, looked)
        return looked

    async def _look_up(self, credential_id: str) -> _Looked | None:
        async with self._sessions() as session:
            row = await session.get(CredentialRow, credential_id)
        if row is None:
            return None
        principal = None if row.revoked_at is not None else access.Principal(
            row.credential_id, access.Role(row.role), row.subject, row.rate_limit,
            row.byte_rate_limit)
        return _Looked(row.secret_hash, principal)
