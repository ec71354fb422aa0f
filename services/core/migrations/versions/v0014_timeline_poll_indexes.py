"""Partial indexes for the metrics service's polls, which run every few seconds: the
tickets whose first-response target is undecided (the deadline check) and the open
tickets per department (the backlog). Without them each poll scanned every timeline
whose deadline had passed, or every timeline: its cost grew with the table, decided and
resolved tickets included (50 ms of CPU a poll at 200,000 timelines).

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"

UNDECIDED = "target_outcome IS NULL"
OPEN = "routed_at IS NOT NULL AND resolved_at IS NULL"


def upgrade() -> None:
    op.create_index("ix_ticket_timelines_undecided_deadline", "ticket_timelines",
                    ["first_response_deadline"], sqlite_where=sa.text(UNDECIDED),
                    postgresql_where=sa.text(UNDECIDED))
    op.create_index("ix_ticket_timelines_open_department", "ticket_timelines", ["department"],
                    sqlite_where=sa.text(OPEN), postgresql_where=sa.text(OPEN))


def downgrade() -> None:
    op.drop_index("ix_ticket_timelines_open_department", table_name="ticket_timelines")
    op.drop_index("ix_ticket_timelines_undecided_deadline", table_name="ticket_timelines")
