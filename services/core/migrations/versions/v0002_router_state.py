"""The router's state: routed tickets with their trace, and intake idempotency keys.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "routed_tickets",
        sa.Column("ticket_id", sa.String(length=128), nullable=False),
        sa.Column("department", sa.String(length=63), nullable=False),
        sa.Column("segment", sa.String(length=63), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=True),
        sa.Column("first_response_deadline", sa.DateTime(timezone=True), nullable=True),
        sa.Column("first_response_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("escalated", sa.Boolean(), nullable=False),
        sa.Column("trace", sa.JSON(), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("ticket_id"),
    )
    op.create_index(op.f("ix_routed_tickets_department"), "routed_tickets", ["department"])
    op.create_index(op.f("ix_routed_tickets_first_response_deadline"), "routed_tickets",
                    ["first_response_deadline"])
    op.create_table(
        "intake_keys",
        sa.Column("idempotency_key", sa.String(length=255), nullable=False),
        sa.Column("ticket_id", sa.String(length=128), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("idempotency_key"),
    )
    op.create_index(op.f("ix_intake_keys_created_at"), "intake_keys", ["created_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_intake_keys_created_at"), table_name="intake_keys")
    op.drop_table("intake_keys")
    op.drop_index(op.f("ix_routed_tickets_first_response_deadline"),
                  table_name="routed_tickets")
    op.drop_index(op.f("ix_routed_tickets_department"), table_name="routed_tickets")
    op.drop_table("routed_tickets")
