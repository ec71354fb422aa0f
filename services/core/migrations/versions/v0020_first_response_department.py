"""The department a ticket's first response is credited to: the one that held the ticket
when it was answered, as the metrics service credits it. The router's response rate
(the load sample, which overflow predicts by) counted the department holding the ticket
now, so a ticket answered and then transferred raised the rate of the department that
took it. The index the load sample's polls search carries it, so that the rate is still
read from the index alone. Tickets answered before this revision are credited to their
department now, as before.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0020"
down_revision: str | None = "0019"

INDEX = "ix_routed_tickets_first_response"


def upgrade() -> None:
    op.add_column("routed_tickets", sa.Column("first_response_department", sa.String(63),
                                              nullable=True))
    op.drop_index(INDEX, table_name="routed_tickets")
    op.create_index(INDEX, "routed_tickets",
                    ["first_response_at", "department", "first_response_department"])


def downgrade() -> None:
    op.drop_index(INDEX, table_name="routed_tickets")
    op.create_index(INDEX, "routed_tickets", ["first_response_at", "department"])
    with op.batch_alter_table("routed_tickets") as table:  # SQLite rebuilds the table
        table.drop_column("first_response_department")
