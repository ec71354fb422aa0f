"""The metrics timeline keeps the last move of the router's first-response clock it has
seen (a transfer, an escalation, a priority change, a pause or the customer's reply), so
that a response dated before it is taken at it, as the router's clock takes it
(services/core/targets.py): both services judge a target met by one rule.

Revision ID: 0031
Revises: 0030
Create Date: 2026-12-07

Timelines from before this revision have none: their responses are taken at their dates,
as before.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0031"
down_revision: str | None = "0030"


def upgrade() -> None:
    op.add_column("ticket_timelines", sa.Column("clock_moved_at", sa.DateTime(timezone=True),
                                                nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("ticket_timelines") as table:  # SQLite rebuilds the table
        table.drop_column("clock_moved_at")
