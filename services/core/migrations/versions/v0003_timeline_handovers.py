"""Ticket timelines: escalation and transfer moments, hand-overs, first-response targets.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24

Hand-checked against services/metrics/store.py. Every column is nullable, so rows from
before keep working: a timeline without `assignments` is read as routed once to its
department (services/metrics/store.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MOMENTS = ("escalated_at", "transferred_at", "first_response_deadline")


def upgrade() -> None:
    for name in MOMENTS:
        op.add_column("ticket_timelines", sa.Column(name, sa.DateTime(timezone=True),
                                                    nullable=True))
    op.add_column("ticket_timelines", sa.Column("target_outcome", sa.String(length=8),
                                                nullable=True))
    op.add_column("ticket_timelines", sa.Column("assignments", sa.JSON(), nullable=True))
    op.create_index("ix_ticket_timelines_first_response_deadline", "ticket_timelines",
                    ["first_response_deadline"])


def downgrade() -> None:
    op.drop_index("ix_ticket_timelines_first_response_deadline",
                  table_name="ticket_timelines")
    with op.batch_alter_table("ticket_timelines") as table:  # SQLite rebuilds the table
        for name in ("assignments", "target_outcome", *reversed(MOMENTS)):
            table.drop_column(name)
