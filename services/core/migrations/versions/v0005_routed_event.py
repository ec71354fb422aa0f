"""Routed tickets remember which copy of the ticket routed them (the segmented event's id),
so that a second copy of the same ticket is recognised and not routed again.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24

Nullable: tickets routed before this revision have none, and are never taken for copies.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("routed_tickets", sa.Column("routed_event_id", sa.String(length=64),
                                              nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("routed_tickets") as table:  # SQLite rebuilds the table
        table.drop_column("routed_event_id")
