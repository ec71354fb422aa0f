"""A report's `Idempotency-Key` keeps the date the report was judged to stand at. A
report dated by a clock running a little from the router's is dated at the nearer end
of its plausible range (its ticket's receipt or arrival, or now), so the date published
may differ from the one given; a retry taking over from a request that died publishes
the report again at that date, not at the one given. (While instances of the revision
before run beside this one, an older one taking over such a claim publishes the date
given, up to REPORT_CLOCK_SKEW before the ticket's arrival.)

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0021"
down_revision: str | None = "0020"


def upgrade() -> None:
    op.add_column("intake_keys", sa.Column("occurred_at", sa.DateTime(timezone=True),
                                           nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("intake_keys") as table:  # SQLite rebuilds the table
        table.drop_column("occurred_at")
