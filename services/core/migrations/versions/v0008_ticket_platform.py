"""Routed tickets name the support platform that posted them.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30

Tickets routed before this revision get their platform from the copy they keep
(`payload.platform`), where it has one.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("routed_tickets", sa.Column("platform", sa.String(length=128),
                                              nullable=True))
    platform_of_payload = ("json_extract(payload, '$.platform')"
                           if op.get_bind().dialect.name == "sqlite"
                           else "(payload::jsonb ->> 'platform')")
    op.execute(f"UPDATE routed_tickets SET platform = {platform_of_payload}"
               " WHERE platform IS NULL")
    op.create_index("ix_routed_tickets_platform", "routed_tickets", ["platform"])


def downgrade() -> None:
    op.drop_index("ix_routed_tickets_platform", table_name="routed_tickets")
    with op.batch_alter_table("routed_tickets") as table:  # SQLite rebuilds the table
        table.drop_column("platform")
