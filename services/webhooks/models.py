"""Tables of the callbacks: each platform's endpoint, and the outbox of deliveries."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from services.core import access, db, identifiers
from services.core.db import Base
from services.webhooks import catalog

# What a callback that failed keeps of why (its last attempt's error, cut to fit).
MAX_LAST_ERROR = 300
# A callback's status: waiting to be sent, sent, or given up on (its attempts used up).
PENDING, DELIVERED, DEAD = "pending", "delivered", "dead"
FINISHED = (DELIVERED, DEAD)  # what retention deletes; pending ones stay


class WebhookEndpointRow(Base):
    """Where a platform is called back, and the secret its callbacks are signed with
    (kept as such: signing needs it, unlike a credential's token, which is hashed)."""

    __tablename__ = "webhook_endpoints"

    platform: Mapped[str] = mapped_column(String(access.MAX_SUBJECT), primary_key=True)
    url: Mapped[str] = mapped_column(String(catalog.MAX_URL_LENGTH))
    secret: Mapped[str] = mapped_column(String(128))
    # The secret before the last rotation, still signing until `previous_secret_until`
    # (a second signature), so that receivers can switch without refusing anything.
    previous_secret: Mapped[str | None] = mapped_column(String(128))
    previous_secret_until: Mapped[datetime | None] = mapped_column(db.UtcDateTime())
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    # Until when its receiver asked to be sent nothing (a 429, a 503 with Retry-After);
    # null, or past: not held.
    held_until: Mapped[datetime | None] = mapped_column(db.UtcDateTime())
    created_at: Mapped[datetime] = mapped_column(db.UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(db.UtcDateTime())


class WebhookDeliveryRow(Base):
    """One callback to send (pending), sent (delivered) or given up on (dead)."""

    __tablename__ = "webhook_deliveries"
    # The delivery poll's (due), and the listings' and the retention purge's: each status
    # by last change (v0016), so a purge does not read the pending callbacks it keeps;
    # then by id (v0027), the order of a listing's pages.
    # The replay's: each status in delivery id order (v0023), so each chunk of a replay
    # reads its own dead callbacks, not all of them again.
    __table_args__ = (Index("ix_webhook_deliveries_due", "status", "platform",
                            "next_attempt_at"),
                      Index("ix_webhook_deliveries_status_updated", "status", "updated_at",
                            "delivery_id"),
                      Index("ix_webhook_deliveries_status_delivery", "status", "delivery_id"))

    delivery_id: Mapped[str] = mapped_column(String(80), primary_key=True)
    platform: Mapped[str] = mapped_column(String(access.MAX_SUBJECT))
    event_type: Mapped[str] = mapped_column(String(64))
    ticket_id: Mapped[str] = mapped_column(String(identifiers.MAX_LENGTH))
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(db.UtcDateTime())
    last_error: Mapped[str | None] = mapped_column(String(MAX_LAST_ERROR))
    created_at: Mapped[datetime] = mapped_column(db.UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(db.UtcDateTime())


class DeadLetterClockRow(Base):
    """When the last callback was dead-lettered, in microseconds since 1970 (one row, made
    by v0028): each dead-lettering takes the next moment, and holds this row locked until
    it commits, so that dead letters' moments rise in the order they commit
    (outbox_store.next_dead_letter_moment)."""

    __tablename__ = "webhook_dead_letter_clock"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    last_dead_lettered_micros: Mapped[int] = mapped_column(BigInteger)
