"""A routed ticket's status holds every lifecycle status: `waiting_on_customer` (19
characters) did not fit the 16 of routed_tickets.status, so PostgreSQL refused the
report (SQLite does not check lengths).

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"


def upgrade() -> None:
    with op.batch_alter_table("routed_tickets") as table:  # SQLite rebuilds the table
        table.alter_column("status", existing_type=sa.String(length=16),
                           type_=sa.String(length=32), existing_nullable=False)


def downgrade() -> None:
    # Statuses longer than 16 characters would not fit: they go back to `responded`,
    # the conversation status the old schema had.
    op.execute("UPDATE routed_tickets SET status = 'responded' WHERE LENGTH(status) > 16")
    with op.batch_alter_table("routed_tickets") as table:
        table.alter_column("status", existing_type=sa.String(length=32),
                           type_=sa.String(length=16), existing_nullable=False)
