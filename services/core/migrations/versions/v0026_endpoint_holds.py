"""When a platform's webhook endpoint is held until: its receiver answered 429 (or 503
with Retry-After), asking the sender to slow down, and no worker of the fleet sends to it
before then (delivery.py). Null: not held. An endpoint before this migration is not held.

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0026"
down_revision: str | None = "0025"


def upgrade() -> None:
    op.add_column("webhook_endpoints", sa.Column("held_until", sa.DateTime(timezone=True),
                                                 nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("webhook_endpoints") as batch:
        batch.drop_column("held_until")
