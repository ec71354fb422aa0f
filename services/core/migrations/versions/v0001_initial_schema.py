"""The initial schema: the customer store and the ticket timelines.

Revision ID: 0001
Revises:
Create Date: 2026-11-23

Hand-checked against services/segmenter/models.py and services/metrics/store.py (the
models' defaults are Python-side only, so no server defaults here).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "customers",
        sa.Column("customer_id", sa.String(length=128), nullable=False),
        sa.Column("customer_type", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("email", sa.String(length=254), nullable=True),
        sa.Column("birth_date", sa.Date(), nullable=True),
        sa.Column("gender", sa.String(length=32), nullable=True),
        sa.Column("country", sa.String(length=2), nullable=True),
        sa.Column("language", sa.String(length=16), nullable=True),
        sa.Column("socio_economic_band", sa.String(length=16), nullable=True),
        sa.Column("signup_date", sa.Date(), nullable=True),
        sa.Column("attributes", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("customer_id"),
    )
    op.create_table(
        "purchases",
        sa.Column("purchase_id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("customer_id", sa.String(length=128), nullable=False),
        sa.Column("amount", sa.Numeric(precision=14, scale=2), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("purchased_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.customer_id"],
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("purchase_id"),
    )
    op.create_index("ix_purchases_customer_id", "purchases", ["customer_id"])
    op.create_table(
        "customer_features",
        sa.Column("customer_id", sa.String(length=128), nullable=False),
        sa.Column("total_value", sa.Double(), nullable=False),
        sa.Column("trailing_12m_value", sa.Double(), nullable=False),
        sa.Column("growth", sa.Double(), nullable=False),
        sa.Column("growth_ratio", sa.Double(), nullable=False),
        sa.Column("purchases", sa.Integer(), nullable=False),
        sa.Column("last_purchase_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("tickets_raised", sa.Integer(), nullable=False),
        sa.Column("tier", sa.String(length=16), nullable=False),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.customer_id"],
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("customer_id"),
    )
    op.create_index("ix_customer_features_tier", "customer_features", ["tier"])
    op.create_table(
        "tier_cutoffs",
        sa.Column("run_id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("cutoffs", sa.JSON(), nullable=False),
        sa.Column("customers", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("run_id"),
    )
    op.create_index("ix_tier_cutoffs_computed_at", "tier_cutoffs", ["computed_at"])
    op.create_table(
        "ticket_timelines",
        sa.Column("ticket_id", sa.String(length=128), nullable=False),
        sa.Column("department", sa.String(length=63), nullable=True),
        sa.Column("segment", sa.String(length=63), nullable=True),
        sa.Column("routing_reason", sa.String(length=32), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("segmented_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("routed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("picked_up_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("first_response_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("observed", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("ticket_id"),
    )
    op.create_index("ix_ticket_timelines_department", "ticket_timelines", ["department"])
    op.create_index("ix_ticket_timelines_segment", "ticket_timelines", ["segment"])
    op.create_index("ix_ticket_timelines_routed_at", "ticket_timelines", ["routed_at"])


def downgrade() -> None:
    # Dropping a table drops its indexes; dependants go before the tables they reference.
    for table in ("ticket_timelines", "tier_cutoffs", "customer_features", "purchases",
                  "customers"):
        op.drop_table(table)
