"""The department a ticket's first-response target was credited to, kept with its outcome
when the target is decided: the counter and the stats' attainment then read one
department. The stats had worked it out again from the timeline, and for a ticket
answered while its clock was paused (no deadline) named whoever held it last. A target
decided before this migration keeps none: the stats work it out as they did.

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0024"
down_revision: str | None = "0023"


def upgrade() -> None:
    op.add_column("ticket_timelines", sa.Column("target_department", sa.String(length=63),
                                                nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("ticket_timelines") as batch:
        batch.drop_column("target_department")
