"""Erasures are remembered: erasing a customer deleted their tickets as the router kept
them, but a ticket of theirs still in Kafka then (on its way to the router, or a dead
letter replayed later) was routed and kept afterwards, with its copy. The router now
routes such a ticket without keeping it; this table says whose and since when.

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0022"
down_revision: str | None = "0021"


def upgrade() -> None:
    op.create_table(
        "erased_customers",
        sa.Column("customer_id", sa.String(length=128), primary_key=True),
        sa.Column("erased_at", sa.DateTime(timezone=True), nullable=False))
    op.create_index("ix_erased_customers_erased_at", "erased_customers", ["erased_at"])


def downgrade() -> None:
    op.drop_index("ix_erased_customers_erased_at", table_name="erased_customers")
    op.drop_table("erased_customers")
