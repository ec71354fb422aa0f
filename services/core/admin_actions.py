"""What admins did to credentials and webhook endpoints, and who: kept in the store and
logged, as the routing table's and the segment rules' versions keep their author.

An action is written in the transaction that does it (no action without its record, no
record of an action rolled back) and logged once that transaction is committed. Its
actor is the credential that asked (`config_store.credential_author`: its role and id,
never a token), or the command line, or, for an endpoint disabled because its receiver
answered 410 Gone, that receiver. What it names is a credential's id or a platform's
name, and what changed (an endpoint's host, a credential's own limits, that its label
changed; never a secret, a token or a whole URL, whose query may hold one, nor what a
label says); never personal data.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict
from sqlalchemy import Integer, String, event, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Mapped, Session, mapped_column

from services.core import access, config_store, db, versions
from services.core.db import Base

logger = logging.getLogger(__name__)

COMMAND_LINE = "command line"  # the actor of `routing credentials` and `routing webhooks`
# The actor of an endpoint disabled by its own receiver (Action.ENDPOINT_GONE).
RECEIVER_GONE = "its receiver: HTTP 410 Gone"
MAX_TARGET = max(access.MAX_SUBJECT, 2 * access.ID_BYTES)  # a platform's name, a credential's id
MAX_CHANGE = 200


class Action(enum.StrEnum):
    CREDENTIAL_ISSUED = "credential_issued"
    CREDENTIAL_REVOKED = "credential_revoked"
    CREDENTIAL_CHANGED = "credential_changed"  # its label or its own limits
    ENDPOINT_REGISTERED = "webhook_endpoint_registered"
    ENDPOINT_CHANGED = "webhook_endpoint_changed"
    ENDPOINT_DELETED = "webhook_endpoint_deleted"
    ENDPOINT_GONE = "webhook_endpoint_gone"  # disabled: its receiver answered 410 Gone
    SECRET_ROTATED = "webhook_secret_rotated"


class AdminActionRow(Base):
    __tablename__ = "admin_actions"

    action_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(db.UtcDateTime(), index=True)
    action: Mapped[str] = mapped_column(String(32))
    target: Mapped[str] = mapped_column(String(MAX_TARGET))
    actor: Mapped[str] = mapped_column(String(versions.MAX_AUTHOR))
    change: Mapped[str] = mapped_column(String(MAX_CHANGE))


class AdminAction(BaseModel):
    """One action as admins read it back."""

    model_config = ConfigDict(frozen=True, from_attributes=True)

    at: datetime
    action: Action
    target: str
    actor: str
    change: str


def actor_of(principal: access.Principal) -> str:
    """The actor of a request: its credential, by role and id."""
    return config_store.credential_author(principal.credential_id, principal.role.value)


@dataclass(frozen=True)
class Done:
    """An action about to be committed: what, on what, by whom, what changed."""

    action: Action
    target: str
    actor: str
    change: str = ""


def record(session: AsyncSession, done: Done) -> None:
    """Write `done` in `session`'s transaction; logged once that transaction commits."""
    session.add(AdminActionRow(at=datetime.now(UTC), action=done.action.value,
                               target=done.target, actor=done.actor[:versions.MAX_AUTHOR],
                               change=done.change[:MAX_CHANGE]))

    def committed(_session: Session) -> None:
        logger.info("admin action", extra={"action": done.action.value,
                                           "target": done.target, "actor": done.actor,
                                           "change": done.change})

    event.listen(session.sync_session, "after_commit", committed, once=True)


class AdminActions:
    """The actions kept, for admins to read back (`GET /v1/admin-actions`)."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def listed(self, *, since: datetime | None = None, limit: int = 100
                     ) -> Sequence[AdminAction]:
        """The actions since `since` (all without), newest first, at most `limit`."""
        query = select(AdminActionRow).order_by(AdminActionRow.action_id.desc()).limit(limit)
        if since is not None:
            query = query.where(AdminActionRow.at >= since)
        async with self._sessions() as session:
            return [AdminAction.model_validate(row) for row in await session.scalars(query)]
