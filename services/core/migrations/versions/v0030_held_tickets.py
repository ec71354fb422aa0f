"""Tickets held as dead letters: a ticket a stage dead-lettered (the segmenter's or the
router's) and not routed since, by the dead letter that holds it, so that a department, an
admin or the platform that posted it is told it is held until an operator replays it,
rather than that no such ticket exists (services/router/held_tickets.py). Ids, a stage,
a time and a fault's class alone: no personal data, no ticket text.

Revision ID: 0030
Revises: 0029
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0030"
down_revision: str | None = "0029"


def upgrade() -> None:
    op.create_table(
        "held_tickets",
        sa.Column("ticket_id", sa.String(128), primary_key=True),
        sa.Column("dead_letter_id", sa.String(40), nullable=False),
        sa.Column("stage", sa.String(64), nullable=False),
        sa.Column("error_class", sa.String(128), nullable=False),
        sa.Column("held_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("platform", sa.String(128), nullable=True),
    )
    op.create_index("ix_held_tickets_held_at", "held_tickets", ["held_at"])


def downgrade() -> None:
    op.drop_index("ix_held_tickets_held_at", table_name="held_tickets")
    op.drop_table("held_tickets")
