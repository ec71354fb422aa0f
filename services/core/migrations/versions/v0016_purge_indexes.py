"""Indexes for two retention purges (hourly, once a fleet) that read more than they
delete, again at every chunk:

- the metrics service's, which takes a timeline never routed (a dead-lettered ticket's)
  by when it was received: through the index on `routed_at` alone it read every
  never-routed timeline to check its reception. Now by `routed_at`, then `received_at`
  (which also serves the reports' window, routed since a moment);
- the webhook outbox's, which keeps pending callbacks: through the index on `updated_at`
  alone it read every pending callback older than the cutoff (a disabled endpoint's
  stay). Now by status, then last change: the purge reads the delivered and dead-lettered
  ones, and the listings of a status come in their order.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"


def upgrade() -> None:
    op.create_index("ix_ticket_timelines_routed_received", "ticket_timelines",
                    ["routed_at", "received_at"])
    op.drop_index("ix_ticket_timelines_routed_at", table_name="ticket_timelines")
    op.create_index("ix_webhook_deliveries_status_updated", "webhook_deliveries",
                    ["status", "updated_at"])
    op.drop_index("ix_webhook_deliveries_updated_at", table_name="webhook_deliveries")


def downgrade() -> None:
    op.create_index("ix_webhook_deliveries_updated_at", "webhook_deliveries", ["updated_at"])
    op.drop_index("ix_webhook_deliveries_status_updated", table_name="webhook_deliveries")
    op.create_index("ix_ticket_timelines_routed_at", "ticket_timelines", ["routed_at"])
    op.drop_index("ix_ticket_timelines_routed_received", table_name="ticket_timelines")
