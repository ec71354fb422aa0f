"""Service-level clocks: the router keeps each ticket's clocks (first response, next
response, resolution) and when they next call for a warning or an escalation; the
metrics timeline keeps when the ticket began waiting on the customer and which clock
notices it has counted.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30

Tickets routed before this revision have no clocks: their first-response deadline is
watched as before.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("routed_tickets", sa.Column("service_clocks", sa.JSON(), nullable=True))
    op.add_column("routed_tickets", sa.Column("next_clock_check", sa.DateTime(timezone=True),
                                              nullable=True))
    op.create_index("ix_routed_tickets_next_clock_check", "routed_tickets",
                    ["next_clock_check"])
    op.add_column("ticket_timelines", sa.Column("paused_at", sa.DateTime(timezone=True),
                                                nullable=True))
    op.add_column("ticket_timelines", sa.Column("clock_notices", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("ticket_timelines") as table:  # SQLite rebuilds the table
        table.drop_column("clock_notices")
        table.drop_column("paused_at")
    op.drop_index("ix_routed_tickets_next_clock_check", table_name="routed_tickets")
    with op.batch_alter_table("routed_tickets") as table:
        table.drop_column("next_clock_check")
        table.drop_column("service_clocks")
