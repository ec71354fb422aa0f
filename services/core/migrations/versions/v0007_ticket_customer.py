"""Routed tickets name their customer, so that erasing a customer finds their tickets;
an index on when a ticket last changed, for the retention purge.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01

Tickets routed before this revision get their customer from the copy they keep
(`payload.customer_id`).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("routed_tickets", sa.Column("customer_id", sa.String(length=128),
                                              nullable=True))
    customer_of_payload = ("json_extract(payload, '$.customer_id')"
                           if op.get_bind().dialect.name == "sqlite"
                           else "(payload::jsonb ->> 'customer_id')")
    op.execute(f"UPDATE routed_tickets SET customer_id = {customer_of_payload}"
               " WHERE customer_id IS NULL")
    op.create_index("ix_routed_tickets_customer_id", "routed_tickets", ["customer_id"])
    op.create_index("ix_routed_tickets_updated_at", "routed_tickets", ["updated_at"])


def downgrade() -> None:
    op.drop_index("ix_routed_tickets_updated_at", table_name="routed_tickets")
    op.drop_index("ix_routed_tickets_customer_id", table_name="routed_tickets")
    with op.batch_alter_table("routed_tickets") as table:  # SQLite rebuilds the table
        table.drop_column("customer_id")
