"""Indexes for the router's polls of its routed tickets, which run every few seconds in
each router process (the load sample: backlog, oldest open ticket, recent first
responses) or once a fleet (the escalation check). Without them the load sample read
every routed ticket kept, three times, and the escalation check every ticket whose
deadline had passed, answered ones included: their cost grew with the history the store
keeps (its retention), not with the open tickets they are about (`bench.router_polls`).

- backlog and oldest open ticket: by status, then department and last change (the index
  answers both without reading the table);
- first responses since a moment, and unanswered tickets past their deadline (the
  escalation check): by first response, then deadline (replaces the index on every
  deadline).

The index on the department alone goes: no statement filters on it, and the polls'
grouping by it had SQLite read the whole table in its order.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"


def upgrade() -> None:
    op.create_index("ix_routed_tickets_status_department", "routed_tickets",
                    ["status", "department", "updated_at"])
    op.create_index("ix_routed_tickets_first_response", "routed_tickets",
                    ["first_response_at", "first_response_deadline"])
    op.drop_index("ix_routed_tickets_first_response_deadline", table_name="routed_tickets")
    op.drop_index("ix_routed_tickets_department", table_name="routed_tickets")


def downgrade() -> None:
    op.create_index("ix_routed_tickets_department", "routed_tickets", ["department"])
    op.create_index("ix_routed_tickets_first_response_deadline", "routed_tickets",
                    ["first_response_deadline"])
    op.drop_index("ix_routed_tickets_first_response", table_name="routed_tickets")
    op.drop_index("ix_routed_tickets_status_department", table_name="routed_tickets")
