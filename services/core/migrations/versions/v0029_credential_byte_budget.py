"""A credential's own budget of body bytes (`byte_rate_limit`, e.g. 16MiB/second), as it
has its own rate of requests: null, the service's `INTAKE_BYTE_RATE_LIMIT`. A credential
issued before this migration has none.

Revision ID: 0029
Revises: 0028
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0029"
down_revision: str | None = "0028"


def upgrade() -> None:
    op.add_column("credentials", sa.Column("byte_rate_limit", sa.String(length=32),
                                           nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("credentials") as batch:
        batch.drop_column("byte_rate_limit")
