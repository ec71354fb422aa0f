"""Routed tickets keep the correlation id they came with, so an escalation or transfer
publishes under it (the id travels end to end).

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30

Tickets routed before this revision have none: their handovers use the ticket id, as
before.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
COLUMN = sa.Column("correlation_id", sa.String(length=256), nullable=True)


def upgrade() -> None:
    op.add_column("routed_tickets", COLUMN)


def downgrade() -> None:
    with op.batch_alter_table("routed_tickets") as table:  # SQLite rebuilds the table
        table.drop_column(COLUMN.name)
