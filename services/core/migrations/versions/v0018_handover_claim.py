"""A hand-over's claim on a routed ticket: a transfer or an escalation claims the
ticket (still with the department it read, open, no other claim standing) before it
publishes it to another queue, and its record ends the claim. Two hand-overs at once put
a ticket in two queues before: each published, then each recorded. A claim outlives
its publish, and expires if its holder died in between.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"


def upgrade() -> None:
    op.add_column("routed_tickets", sa.Column("handover_until", sa.DateTime(timezone=True),
                                              nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("routed_tickets") as table:  # SQLite rebuilds the table
        table.drop_column("handover_until")
