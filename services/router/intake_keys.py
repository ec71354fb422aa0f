"""The intake's `Idempotency-Key`s: a retried POST gets the same ticket id (and the
same correlation id), and no second ticket; a retried report the same event id, and no
second event."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.core import retention
from services.router import intake_policy
from services.router.models import IntakeKeyRow


class IntakeKeys:
    """`Idempotency-Key`s: a retried POST gets the same ticket id, and no second ticket; a
    retried report the same event id, and no second report."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def claim(self, key: str, *, fingerprint: str, ticket_id: str, now: datetime,
                    correlation_id: str | None = None, event_id: str | None = None,
                    occurred_at: datetime | None = None) -> IntakeKeyRow:
        """The key's row: ours (status pending) if the key is new, else the first one's.
        A report's key holds the id of its event (`event_id`) and the date it was judged
        to stand at (`occurred_at`) besides its ticket's."""
        row = dict(idempotency_key=key, ticket_id=ticket_id, fingerprint=fingerprint,
                   status=intake_policy.PENDING, created_at=now, correlation_id=correlation_id,
                   event_id=event_id, occurred_at=occurred_at)
        try:
            async with self._sessions() as session, session.begin():
                session.add(IntakeKeyRow(**row))
        except IntegrityError:
            async with self._sessions() as session:
                existing = await session.get(IntakeKeyRow, key)
            if existing is None:  # deleted in between (purged, erased): try once more
                return await self.claim(key, fingerprint=fingerprint, ticket_id=ticket_id,
                                        now=now, correlation_id=correlation_id,
                                        event_id=event_id, occurred_at=occurred_at)
            return existing
        return IntakeKeyRow(**row)

    async def accepted(self, key: str, *, correlation_id: str) -> None:
        """Its ticket or report is in Kafka, published under `correlation_id` (a replay
        answers it)."""
        async with self._sessions() as session, session.begin():
            row = await session.get(IntakeKeyRow, key)
            if row is not None:
                row.status, row.correlation_id = intake_policy.ACCEPTED, correlation_id

    async def unpublished(self, key: str) -> None:
        """Its request's publish failed (Kafka did not take it, the caller was answered
        503): a retry takes the key over at once. Only a pending key: one accepted
        meanwhile stays so."""
        async with self._sessions() as session, session.begin():
            await session.execute(
                update(IntakeKeyRow)
                .where(IntakeKeyRow.idempotency_key == key,
                       IntakeKeyRow.status == intake_policy.PENDING)
                .values(status=intake_policy.UNPUBLISHED))

    async def find(self, key: str) -> IntakeKeyRow | None:
        """The key's row, if it was claimed."""
        async with self._sessions() as session:
            return await session.get(IntakeKeyRow, key)

    async def purge(self, before: datetime, *, chunk: int) -> int:
        """Delete keys created before `before` (retention): a retry with such a key
        later makes a new ticket."""
        return await retention.delete_in_chunks(
            self._sessions, IntakeKeyRow.idempotency_key, IntakeKeyRow.created_at < before,
            chunk=chunk)
