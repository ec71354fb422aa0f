"""The callbacks' SQL state: platforms' endpoints and the outbox of deliveries."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import ColumnElement, and_, case, delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.core import admin_actions, db, retention
from services.webhooks import catalog, models, pages
from services.webhooks.models import WebhookDeliveryRow, WebhookEndpointRow

PENDING, DELIVERED, DEAD = "pending", "delivered", "dead"
FINISHED = (DELIVERED, DEAD)  # what retention deletes; pending ones stay
# Dead callbacks a replay sends again a transaction.
REPLAY_CHUNK = 1000
# Callbacks a page of a listing shows at most (the dead letters: those dead-lettered
# longest ago first), and unless asked for fewer.
LISTED_AT_MOST = 500


def not_held(now: datetime) -> ColumnElement[bool]:
    """An endpoint its receiver has not asked to wait past `now` (Endpoints.hold)."""
    return or_(WebhookEndpointRow.held_until.is_(None), WebhookEndpointRow.held_until <= now)


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


def new_secret() -> str:
    """A Standard Webhooks signing secret: `whsec_` and 32 random bytes in base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


class Endpoint(BaseModel):
    """A platform's endpoint, without its secret."""

    model_config = ConfigDict(from_attributes=True)

    platform: str
    url: str
    enabled: bool
    held_until: datetime | None = Field(
        description="Until when nothing is sent to it: its receiver answered 429, or 503"
                    " with Retry-After, asking to wait (null: not held)")
    created_at: datetime
    updated_at: datetime

    @classmethod
    def shown(cls, row: WebhookEndpointRow, *, now: datetime) -> Endpoint:
        """The endpoint as it stands at `now`: a hold whose time passed is shown as none
        (it ended by itself)."""
        return cls.model_validate(row).model_copy(
            update={"held_until": catalog.hold_in_force(row.held_until, now=now)})


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


@dataclass(frozen=True)
class StillSigning:
    """A rotation refused: the secret the last one replaced still signs until `until`."""

    until: datetime


@dataclass(frozen=True)
class Target:
    url: str
    secrets: tuple[str, ...]  # the current one first, then the previous while it signs


class Endpoints:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], *,
                 secret_overlap: timedelta) -> None:
        """`secret_overlap`: how long a rotated secret still signs, besides the new one."""
        self._sessions = sessions
        self._secret_overlap = secret_overlap

    async def register(self, platform: str, url: str, *, enabled: bool = True,
                       actor: str = admin_actions.COMMAND_LINE) -> tuple[Endpoint, str] | None:
        """A new endpoint and its secret (shown this once), recorded as `actor`'s action;
        None if the platform has one."""
        now, secret = datetime.now(UTC), new_secret()
        async with self._sessions() as session:
            try:
                async with session.begin():
                    if await session.get(WebhookEndpointRow, platform) is not None:
                        return None
                    row = WebhookEndpointRow(platform=platform, url=url, secret=secret,
                                             enabled=enabled, created_at=now, updated_at=now)
                    session.add(row)
                    admin_actions.record(session, admin_actions.Done(
                        admin_actions.Action.ENDPOINT_REGISTERED, platform, actor,
                        catalog.change_of(url=url, enabled=enabled)))
                    await session.flush()
                    return Endpoint.shown(row, now=now), secret
            except IntegrityError:  # registered by another request since the look
                return None

    async def listed(self) -> list[Endpoint]:
        now = datetime.now(UTC)
        async with self._sessions() as session:
            rows = await session.scalars(select(WebhookEndpointRow)
                                         .order_by(WebhookEndpointRow.platform))
            return [Endpoint.shown(row, now=now) for row in rows]

    async def get(self, platform: str) -> Endpoint | None:
        now = datetime.now(UTC)
        async with self._sessions() as session:
            row = await session.get(WebhookEndpointRow, platform)
            return None if row is None else Endpoint.shown(row, now=now)

    async def target(self, platform: str) -> Target | None:
        """Where and how to sign a platform's callbacks; None when it has no enabled
        endpoint."""
        async with self._sessions() as session:
            row = await session.get(WebhookEndpointRow, platform)
        if row is None or not row.enabled:
            return None
        until = row.previous_secret_until
        previous = (row.previous_secret,) if row.previous_secret and until is not None \
            and until > datetime.now(UTC) else ()
        return Target(row.url, (row.secret, *previous))

    async def update(self, platform: str, *, url: str | None = None,
                     enabled: bool | None = None, lift_hold: bool = False,
                     actor: str = admin_actions.COMMAND_LINE) -> Endpoint | None:
        """Change the endpoint's URL or whether it is enabled, or lift its hold; a change
        is recorded as `actor`'s action. A new URL, or enabling a disabled endpoint, lifts
        its hold too (the receiver that asked to wait is not the one in force, or an
        admin says go). None if the platform has no endpoint."""
        now = datetime.now(UTC)
        async with self._sessions() as session, session.begin():
            row = await session.get(WebhookEndpointRow, platform, with_for_update=True)
            if row is None:
                return None
            before = (row.url, row.enabled)
            held = catalog.hold_in_force(row.held_until, now=now) is not None
            row.url = url if url is not None else row.url
            row.enabled = enabled if enabled is not None else row.enabled
            moved = (row.url, row.enabled) != before
            if lift_hold or (moved and (row.url != before[0] or row.enabled)):
                row.held_until = None
            lifted = held and row.held_until is None
            if moved or lifted:  # updated_at says when it last changed
                row.updated_at = now
                admin_actions.record(session, admin_actions.Done(
                    admin_actions.Action.ENDPOINT_CHANGED, platform, actor,
                    catalog.change_of(url=row.url if row.url != before[0] else None,
                                      enabled=row.enabled if row.enabled != before[1]
                                      else None, hold_lifted=lifted)))
            await session.flush()
            return Endpoint.shown(row, now=now)

    async def disable_gone(self, platform: str, *, url: str) -> bool:
        """Disable the endpoint whose receiver at `url` answered 410 Gone, as an admin
        disables it (its callbacks wait), recorded as that receiver's action. False, and
        nothing changed, when it is disabled already, deleted, or its URL changed since
        (the receiver that answered is not the one in force)."""
        async with self._sessions() as session, session.begin():
            # One statement: of callbacks answered 410 at once, one disables it (on SQLite
            # too, which takes no row lock on a read).
            result = await session.execute(
                update(WebhookEndpointRow)
                .where(WebhookEndpointRow.platform == platform, WebhookEndpointRow.enabled,
                       WebhookEndpointRow.url == url)
                .values(enabled=False, updated_at=datetime.now(UTC)))
            if not getattr(result, "rowcount", 0):
                return False
            admin_actions.record(session, admin_actions.Done(
                admin_actions.Action.ENDPOINT_GONE, platform, admin_actions.RECEIVER_GONE,
                catalog.change_of(url=url, enabled=False)))
            return True

    async def hold(self, platform: str, *, url: str, until: datetime, now: datetime) -> bool:
        """Hold the endpoint whose receiver at `url` asked to be sent nothing until
        `until` (a 429, a 503 with Retry-After): no worker of the fleet sends to it before
        then. True when that starts a hold (it was not held at `now`), so that it is said
        once; False when it lengthens one, or changes nothing: held longer already,
        deleted, or its URL changed since (the receiver that asked is not the one in
        force)."""
        endpoint = (WebhookEndpointRow.platform == platform, WebhookEndpointRow.url == url)
        async with self._sessions() as session, session.begin():
            # Statements, not a read then a write: of callbacks answered 429 at once, one
            # starts the hold (on SQLite too, which takes no row lock on a read).
            started = await session.execute(
                update(WebhookEndpointRow).where(*endpoint, not_held(now))
                .values(held_until=until))
            if getattr(started, "rowcount", 0):
                return True
            await session.execute(
                update(WebhookEndpointRow).where(*endpoint, WebhookEndpointRow.held_until < until)
                .values(held_until=until))
            return False

    async def held(self, now: datetime) -> dict[str, datetime]:
        """The platforms whose endpoint is held past `now`, and until when."""
        async with self._sessions() as session:
            rows = await session.execute(
                select(WebhookEndpointRow.platform, WebhookEndpointRow.held_until)
                .where(WebhookEndpointRow.held_until > now))
            return {platform: until for platform, until in rows if until is not None}

    async def rotate_secret(self, platform: str, *, force: bool = False,
                            actor: str = admin_actions.COMMAND_LINE
                            ) -> str | StillSigning | None:
        """A new secret for the platform's callbacks from now on (shown this once); the
        old one signs too for the overlap. One secret signs beside the current one: while
        the one the last rotation replaced still signs (its receiver may not have moved
        yet), another rotation is refused (StillSigning), unless `force`: then only the
        current secret is replaced (one lost before it was stored, which no receiver
        has), and the one before it signs on for its overlap. None: the platform has no
        endpoint."""
        now = datetime.now(UTC)
        async with self._sessions() as session, session.begin():
            row = await session.get(WebhookEndpointRow, platform, with_for_update=True)
            if row is None:
                return None
            until = row.previous_secret_until
            if row.previous_secret and until is not None and until > now:
                if not force:
                    return StillSigning(until)
                row.secret, row.updated_at = new_secret(), now
                admin_actions.record(session, admin_actions.Done(
                    admin_actions.Action.SECRET_ROTATED, platform, actor,
                    "forced: the current secret replaced"))
                return row.secret
            row.previous_secret = row.secret
            row.previous_secret_until = now + self._secret_overlap
            row.secret, row.updated_at = new_secret(), now
            admin_actions.record(session, admin_actions.Done(
                admin_actions.Action.SECRET_ROTATED, platform, actor))
            return row.secret

    async def delete(self, platform: str, *, actor: str = admin_actions.COMMAND_LINE
                     ) -> Endpoint | None:
        """Forget the endpoint (recorded as `actor`'s action), and the callbacks still
        waiting for it (its dead-lettered ones stay listed, for retention to purge, or an
        admin to replay once the platform registers again)."""
        now = datetime.now(UTC)
        async with self._sessions() as session, session.begin():
            row = await session.get(WebhookEndpointRow, platform)
            if row is None:
                return None
            endpoint = Endpoint.shown(row, now=now)
            await session.delete(row)
            admin_actions.record(session, admin_actions.Done(
                admin_actions.Action.ENDPOINT_DELETED, platform, actor))
            await session.execute(delete(WebhookDeliveryRow).where(
                WebhookDeliveryRow.platform == platform,
                WebhookDeliveryRow.status == PENDING))
            return endpoint

    async def platforms(self) -> set[str]:
        """The platforms with an endpoint (enabled or not: a disabled one's callbacks
        wait until it is enabled again)."""
        return set(await self.registered_since())

    async def registered_since(self) -> dict[str, datetime]:
        """When each platform with an endpoint registered it: events before that are
        not its callbacks."""
        async with self._sessions() as session:
            return dict((await session.execute(select(
                WebhookEndpointRow.platform, WebhookEndpointRow.created_at))).all())


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
                       WebhookEndpointRow.enabled, not_held(now))))

    async def due(self, platform: str, now: datetime, *, limit: int
                  ) -> list[WebhookDeliveryRow]:
        """A platform's callbacks due now, oldest first; none while its endpoint is held
        (those not sent keep their attempts and their time)."""
        async with self._sessions() as session:
            return list(await session.scalars(
                select(WebhookDeliveryRow)
                .join(WebhookEndpointRow,
                      WebhookEndpointRow.platform == WebhookDeliveryRow.platform)
                .where(WebhookDeliveryRow.platform == platform, not_held(now),
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
                       WebhookEndpointRow.enabled.is_(True), not_held(now))
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
