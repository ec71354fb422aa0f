"""The router's backlog is its open tickets without a first response (lifecycle.py), not
the tickets of two statuses: a ticket waiting on the customer, or replied to, before any
response is still awaited, as the metrics service counted it. The load sample's two
polls (backlog, oldest_open) now search the index on `first_response_at`, and the index
by status, which nothing reads any more, goes: one index fewer to write at every
routing and report.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"


def upgrade() -> None:
    op.drop_index("ix_routed_tickets_status_department", table_name="routed_tickets")


def downgrade() -> None:
    op.create_index("ix_routed_tickets_status_department", "routed_tickets",
                    ["status", "department", "updated_at"])
