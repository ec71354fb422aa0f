"""Credentials in the SQL store: issued, listed, changed, revoked, and checked on each
request.

Every service reads the same table, so a credential issued, changed or revoked on one
(through the router's admin API or the `routing credentials` command) holds on all of
them without a restart, within `AUTH_CACHE_SECONDS`: what each service read is kept that
long, and goes on serving platforms' keys while the store is down (`credential_cache`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict
from sqlalchemy import String, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Mapped, mapped_column

from services.core import access, admin_actions, credential_cache, db
from services.core.db import Base

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


class Credentials:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], *,
                 cache_seconds: float = 5.0,
                 read_seconds: float = credential_cache.READ_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._sessions = sessions
        self._cache = credential_cache.CredentialCache(
            self._look_up, cache_seconds=cache_seconds, read_seconds=read_seconds,
            clock=clock)

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
        self._cache.forget(credential_id)
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
        if row is None:
            self._cache.forget(credential_id)
            return None
        self._cache.forget_revoked(credential_id)
        return _shown(row)

    async def authenticate(self, token: str) -> access.Principal | None:
        """The principal a token stands for, or None (malformed, unknown, revoked or a
        wrong secret)."""
        parts = access.split_token(token)
        if parts is None:
            return None
        credential_id, secret = parts
        looked = await self._cache.looked_up(credential_id)
        if looked is None or not access.secret_matches(secret, looked.secret_hash):
            return None
        return looked.principal

    async def _look_up(self, credential_id: str) -> credential_cache.LookedUp | None:
        async with self._sessions() as session:
            row = await session.get(CredentialRow, credential_id)
        if row is None:
            return None
        principal = None if row.revoked_at is not None else access.Principal(
            credential_id=row.credential_id, role=access.Role(row.role),
            subject=row.subject, rate_limit=row.rate_limit,
            byte_rate_limit=row.byte_rate_limit)
        return credential_cache.LookedUp(row.secret_hash, principal)
