"""When the last callback was dead-lettered (one row), so that each dead-lettering takes
its moment after it, in the order they commit: a callback dead-lettered while an admin
pages through the dead letters is on a page after the one read, never before it (a worker
may wait for the store between reading its clock and committing). Started at the last
dead letter's moment before it, so that those after it come after them.

Revision ID: 0028
Revises: 0027
Create Date: 2026-12-07
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import op

revision: str = "0028"
down_revision: str | None = "0027"

# The clock counts as the dead-letter listing's cursors do (services/webhooks/pages.py).
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def upgrade() -> None:
    clock = op.create_table(
        "webhook_dead_letter_clock",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("last_dead_lettered_micros", sa.BigInteger(), nullable=False))
    updated_at = sa.column("updated_at", sa.DateTime(timezone=True))
    last = op.get_bind().scalar(sa.select(sa.func.max(updated_at))
                                .select_from(sa.table("webhook_deliveries"))
                                .where(sa.column("status") == "dead"))
    if last is not None and last.tzinfo is None:  # SQLite's: UTC without an offset
        last = last.replace(tzinfo=UTC)
    micros = 0 if last is None else (last - _EPOCH) // timedelta(microseconds=1)
    op.bulk_insert(clock, [{"id": 1, "last_dead_lettered_micros": micros}])


def downgrade() -> None:
    op.drop_table("webhook_dead_letter_clock")
