"""Reports take an `Idempotency-Key` as tickets do: a department's report or a
platform's customer reply retried under the same key gets the first one's answer (its
event id), and nothing is published twice. A retried `resolved` made a second webhook
callback before, and a retried `picked_up` moved the ticket's last change. The key's row
keeps the report's event id; a ticket's key leaves it empty.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"


def upgrade() -> None:
    op.add_column("intake_keys", sa.Column("event_id", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("intake_keys") as table:  # SQLite rebuilds the table
        table.drop_column("event_id")
