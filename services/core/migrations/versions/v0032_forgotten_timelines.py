"""A timeline says when the router forgot its ticket, and why (`ticket.forgotten`: its
state past retention, its customer erased): open no more (services/core/lifecycle.py),
so the partial index of the open timelines, which the backlog's polls read, leaves it
out too. Times and a reason alone: no personal data.

Revision ID: 0032
Revises: 0031
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0032"
down_revision: str | None = "0031"

INDEX = "ix_ticket_timelines_open_department"
OPEN = "routed_at IS NOT NULL AND resolved_at IS NULL"
STILL_OPEN = f"{OPEN} AND forgotten_at IS NULL"


def upgrade() -> None:
    op.add_column("ticket_timelines",
                  sa.Column("forgotten_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("ticket_timelines", sa.Column("forgotten_reason", sa.String(16), nullable=True))
    _index_open_as(STILL_OPEN)


def downgrade() -> None:
    _index_open_as(OPEN)
    with op.batch_alter_table("ticket_timelines") as table:  # SQLite rebuilds the table
        table.drop_column("forgotten_reason")
        table.drop_column("forgotten_at")


def _index_open_as(condition: str) -> None:
    op.drop_index(INDEX, table_name="ticket_timelines")
    op.create_index(INDEX, "ticket_timelines", ["department"],
                    sqlite_where=sa.text(condition), postgresql_where=sa.text(condition))
