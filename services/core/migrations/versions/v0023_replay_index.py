"""An index of each status's callbacks in delivery id order, for the webhooks' replay of
dead callbacks: 1,000 a transaction, each chunk read from where the last one stopped
(delivery id > the last one's). Through the other status indexes, each chunk read every
dead callback past the last one and sorted them again: a replay after days of a
platform's outage (100,000s of rows) read them a hundred times over.

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-05
"""

from __future__ import annotations

from alembic import op

revision: str = "0023"
down_revision: str | None = "0022"


def upgrade() -> None:
    op.create_index("ix_webhook_deliveries_status_delivery", "webhook_deliveries",
                    ["status", "delivery_id"])


def downgrade() -> None:
    op.drop_index("ix_webhook_deliveries_status_delivery", table_name="webhook_deliveries")
