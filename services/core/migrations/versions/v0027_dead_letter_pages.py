"""The index of each status's callbacks by last change takes their id too, for the pages
of the dead-letter listing: those dead-lettered longest ago first, then by id (two may
have changed at the same moment), each page from where the last one ended. Without the
id, each page's read sorted every dead callback past that place again (PostgreSQL).

Revision ID: 0027
Revises: 0026
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

revision: str = "0027"
down_revision: str | None = "0026"


def upgrade() -> None:
    op.drop_index("ix_webhook_deliveries_status_updated", table_name="webhook_deliveries")
    op.create_index("ix_webhook_deliveries_status_updated", "webhook_deliveries",
                    ["status", "updated_at", "delivery_id"])


def downgrade() -> None:
    op.drop_index("ix_webhook_deliveries_status_updated", table_name="webhook_deliveries")
    op.create_index("ix_webhook_deliveries_status_updated", "webhook_deliveries",
                    ["status", "updated_at"])
