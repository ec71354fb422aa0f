"""The platforms' endpoints in the SQL store: where each is called back, the secrets its
callbacks are signed with, and whether it is enabled or held."""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import ColumnElement, delete, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.core import admin_actions, db
from services.webhooks import catalog, models
from services.webhooks.models import WebhookDeliveryRow, WebhookEndpointRow


def not_held(now: datetime) -> ColumnElement[bool]:
    """An endpoint its receiver has not asked to wait past `now` (Endpoints.hold)."""
    return or_(WebhookEndpointRow.held_until.is_(None), WebhookEndpointRow.held_until <= now)


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
            row = await db.get_held(session, WebhookEndpointRow, platform)
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
            row = await db.get_held(session, WebhookEndpointRow, platform)
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
                WebhookDeliveryRow.status == models.PENDING))
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
