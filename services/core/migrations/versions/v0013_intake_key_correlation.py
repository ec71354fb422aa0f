"""An `Idempotency-Key` keeps the correlation id its ticket was published under, so a
replayed request is answered with it (the id travels end to end), not the ticket id.

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-30

Keys claimed before this revision have none: their replays answer the ticket id, which
is what their tickets were published under unless the caller sent X-Correlation-ID.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
COLUMN = sa.Column("correlation_id", sa.String(length=256), nullable=True)


def upgrade() -> None:
    op.add_column("intake_keys", COLUMN)


def downgrade() -> None:
    with op.batch_alter_table("intake_keys") as table:  # SQLite rebuilds the table
        table.drop_column(COLUMN.name)
