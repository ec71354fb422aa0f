"""The outbox of callbacks in the SQL store: written from lifecycle events, sent by the
delivery workers, listed (the dead letters a page at a time), replayed and purged."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict
from sqlalchemy import and_, case, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.core import db, retention
from services.webhooks import endpoint_store, models, pages
from services.webhooks.models import DEAD, FINISHED, PENDING, WebhookDeliveryRow, WebhookEndpointRow

# Dead callbacks a replay sends again a transaction.
REPLAY_CHUNK = 1000
# Callbacks a page of a listing shows at most (the dead letters: those dead-lettered
# longest ago first), and unless asked for fewer.
LISTED_AT_MOST = 500


async def next_dead_letter_moment(session: AsyncSession, now: datetime) -> datetime:
    """The moment a callback dead-lettered in `session`'s transaction is listed at: `now`,
    or a microsecond after the last dead-lettering's if that is as late. The row counting
    them stays locked until the transaction ends (a dead-lettering waits for the one
    before it to commit), so dead letters' moments rise in the order they commit: a page
    of the listing has seen every dead letter before its place, however long a worker
    waited between reading its clock and committing (pages.py)."""
    clock = models.DeadLetterClockRow
    last, micros = clock.last_dead_lettered_micros, pages.micros_of(now)
    taken = await session.execute(update(clock).values(
        last_dead_lettered_micros=case((last < micros, micros), else_=last + 1))
        .returning(last))
    return pages.moment_of(taken.scalar_one())


class Delivery(BaseModel):
    """A callback in the outbox, as listed to admins (its body holds no personal data)."""

    model_config = ConfigDict(from_attributes=True)

    delivery_id: str
    platform: str
    event_type: str
    ticket_id: str
    status: str
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class Outgoing:
    """A callback to write to the outbox."""

    delivery_id: str
    platform: str
    event_type: str
    ticket_id: str
    body: str


@dataclass(frozen=True)
class Page:
    """Callbacks listed, and where the next page starts (None: none after them)."""

    deliveries: list[Delivery]
    next: pages.Place | None


class Deliveries:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def enqueue(self, outgoing: Sequence[Outgoing]) -> None:
        """Write callbacks to the outbox; one already there (a replayed batch) stays.
        Written by `delivery_id`: one order for two writers of the same callbacks (two
        instances during a hand-over of partitions), since an insert waits for another's
        uncommitted one of the same id, and in one order neither waits in a cycle."""
        if not outgoing:
            return
        now = datetime.now(UTC)
        rows = [{"delivery_id": o.delivery_id, "platform": o.platform,
                 "event_type": o.event_type, "ticket_id": o.ticket_id, "body": o.body,
                 "status": PENDING, "attempts": 0, "next_attempt_at": now,
                 "created_at": now, "updated_at": now}
                for _, o in sorted({o.delivery_id: o for o in outgoing}.items())]
        async with self._sessions() as session, session.begin():
            insert = db.insert_on_conflict(session.get_bind().dialect.name)
            await session.execute(insert(WebhookDeliveryRow).on_conflict_do_nothing(
                index_elements=[WebhookDeliveryRow.delivery_id]), rows)

    async def due_platforms(self, now: datetime) -> set[str]:
        """The platforms with callbacks due and an enabled endpoint not held (a disabled
        or held one's callbacks wait: no worker, no read a poll for them)."""
        async with self._sessions() as session:
            return set(await session.scalars(
                select(WebhookDeliveryRow.platform).distinct()
                .join(WebhookEndpointRow,
                      WebhookEndpointRow.platform == WebhookDeliveryRow.platform)
                .where(WebhookDeliveryRow.status == PENDING,
                       WebhookDeliveryRow.next_attempt_at <= now,
                       WebhookEndpointRow.enabled, endpoint_store.not_held(now))))

    async def due(self, platform: str, now: datetime, *, limit: int
                  ) -> list[WebhookDeliveryRow]:
        """A platform's callbacks due now, oldest first; none while its endpoint is held
        (those not sent keep their attempts and their time)."""
        async with self._sessions() as session:
            return list(await session.scalars(
                select(WebhookDeliveryRow)
                .join(WebhookEndpointRow,
                      WebhookEndpointRow.platform == WebhookDeliveryRow.platform)
                .where(WebhookDeliveryRow.platform == platform, endpoint_store.not_held(now),
                       WebhookDeliveryRow.status == PENDING,
                       WebhookDeliveryRow.next_attempt_at <= now)
                .order_by(WebhookDeliveryRow.created_at, WebhookDeliveryRow.delivery_id)
                .limit(limit)))

    async def record_attempt(self, delivery_id: str, *, status: str, attempts: int,
                             next_attempt_at: datetime, error: str | None,
                             now: datetime | None = None) -> None:
        """A callback's attempt, recorded as its last change at `now` (by default the
        clock's now); one dead-lettered, at the next dead-letter moment from `now` on
        (next_dead_letter_moment)."""
        now = datetime.now(UTC) if now is None else now
        async with self._sessions() as session, session.begin():
            if status == DEAD:
                now = await next_dead_letter_moment(session, now)
            await session.execute(
                update(WebhookDeliveryRow)
                .where(WebhookDeliveryRow.delivery_id == delivery_id,
                       WebhookDeliveryRow.status == PENDING)
                .values(status=status, attempts=attempts, next_attempt_at=next_attempt_at,
                        last_error=None if error is None else error[:models.MAX_LAST_ERROR],
                        updated_at=now))

    async def listed(self, status: str, *, platform: str | None = None,
                     limit: int = LISTED_AT_MOST) -> list[Delivery]:
        """The callbacks of a status, those last changed longest ago first, at most
        `limit`."""
        return (await self.page(status, platform=platform, limit=limit)).deliveries

    async def page(self, status: str, *, platform: str | None = None,
                   since: pages.Place | None = None, limit: int = LISTED_AT_MOST) -> Page:
        """A page of the callbacks of a status, those last changed longest ago first
        (then by id), after `since` (the place a page before ended), at most `limit`;
        and where the next page starts, if any callback is after these. Read by the
        index of each status by last change, from `since` on."""
        changed, key = WebhookDeliveryRow.updated_at, WebhookDeliveryRow.delivery_id
        query = select(WebhookDeliveryRow).where(WebhookDeliveryRow.status == status)
        if platform is not None:
            query = query.where(WebhookDeliveryRow.platform == platform)
        if since is not None:  # its moment alone bounds the index's range
            query = query.where(changed >= since.changed_at, or_(
                changed > since.changed_at, key > since.delivery_id))
        async with self._sessions() as session:
            rows = (await session.scalars(query.order_by(changed, key).limit(limit + 1))).all()
        shown = [Delivery.model_validate(row) for row in rows[:limit]]
        last = shown[-1] if len(rows) > limit else None
        return Page(shown, None if last is None else pages.Place(last.updated_at,
                                                                 last.delivery_id))

    async def replay(self, *, delivery_id: str | None = None, platform: str | None = None,
                     chunk: int = REPLAY_CHUNK) -> int:
        """Dead callbacks sent again from their first attempt: one, a platform's or all,
        `chunk` of them a transaction (in `delivery_id` order), so that replaying many
        is no statement longer than the store's limit. Each chunk's rows are locked by
        `delivery_id` first (db.lock_in_key_order), as the retention purge locks its
        chunks; those sent again meanwhile are not replayed twice."""
        if chunk < 1:
            raise ValueError("a replay goes at least one callback a transaction")
        key = WebhookDeliveryRow.delivery_id
        # Of a platform with an endpoint: one without would have them wait for good (no
        # worker sends to it, and retention keeps what waits), then take them at its next
        # registration, unasked.
        dead = and_(WebhookDeliveryRow.status == DEAD, select(WebhookEndpointRow.platform)
                    .where(WebhookEndpointRow.platform == WebhookDeliveryRow.platform)
                    .exists())
        if delivery_id is not None:
            dead = and_(dead, key == delivery_id)
        if platform is not None:
            dead = and_(dead, WebhookDeliveryRow.platform == platform)
        replayed, after = 0, ""
        while True:
            now = datetime.now(UTC)
            async with self._sessions() as session, session.begin():
                chosen = (await session.scalars(select(key).where(dead, key > after)
                                                .order_by(key).limit(chunk))).all()
                if chosen:
                    in_chunk = and_(dead, key.in_(chosen))
                    await db.lock_in_key_order(session, key, in_chunk)
                    result = await session.execute(update(WebhookDeliveryRow).where(
                        in_chunk).values(status=PENDING, attempts=0, next_attempt_at=now,
                                         updated_at=now))
                    replayed += int(getattr(result, "rowcount", 0) or 0)
            if len(chosen) < chunk:
                return replayed
            after = chosen[-1]

    async def due_since(self, now: datetime) -> dict[str, datetime]:
        """For each platform with an enabled endpoint and callbacks due, when the one due
        longest came due: its worker sends what is due at once, so one due long ago means
        none is sending (a disabled endpoint's callbacks wait, as they should; a held
        one's too, and come due when its hold ends)."""
        async with self._sessions() as session:
            rows = await session.execute(
                select(WebhookDeliveryRow.platform, func.min(WebhookDeliveryRow.next_attempt_at),
                       WebhookEndpointRow.held_until)
                .join(WebhookEndpointRow,
                      WebhookEndpointRow.platform == WebhookDeliveryRow.platform)
                .where(WebhookDeliveryRow.status == PENDING,
                       WebhookDeliveryRow.next_attempt_at <= now,
                       WebhookEndpointRow.enabled.is_(True), endpoint_store.not_held(now))
                .group_by(WebhookDeliveryRow.platform, WebhookEndpointRow.held_until))
            return {platform: since if held_until is None else max(since, held_until)
                    for platform, since, held_until in rows}

    async def counts(self) -> dict[tuple[str, str], int]:
        """How many callbacks each platform has waiting: pending and dead."""
        async with self._sessions() as session:
            rows = await session.execute(
                select(WebhookDeliveryRow.platform, WebhookDeliveryRow.status, func.count())
                .where(WebhookDeliveryRow.status.in_([PENDING, DEAD]))
                .group_by(WebhookDeliveryRow.platform, WebhookDeliveryRow.status))
            return {(platform, status): count for platform, status, count in rows}

    async def purge(self, before: datetime, *, chunk: int) -> int:
        """Delete callbacks delivered or dead-lettered, unchanged since `before`
        (retention); pending ones stay."""
        return await retention.delete_in_chunks(
            self._sessions, WebhookDeliveryRow.delivery_id,
            WebhookDeliveryRow.status.in_(FINISHED) & (WebhookDeliveryRow.updated_at < before),
            chunk=chunk)
