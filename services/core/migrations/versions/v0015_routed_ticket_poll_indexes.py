"""Indexes for the router's polls of its routed tickets, which run every few seconds in
each router process (the load sample: backlog, oldest open ticket, recent first
responses) or once a fleet (the escalation check). Without them the load sample read
every routed ticket kept, three times, and the escalation check every ticket whose
deadline had passed, answered ones included: their cost grew with the history the store
keeps (its retention), not with the open tickets they are about (`bench.router_polls`).

- backlog and oldest open ticket: by status, then department and last change (the index
  answers both without reading the table);
- first responses since a moment: by when, then department (nor does it);
- the escalation check (unanswered tickets past their deadline): the tickets without
  clocks (routed before 0010; the clock watch has the others) and not escalated yet, by
  first response, then deadline, so the check reads the unanswered ones past their
  deadline. It replaces the index on every deadline, through which the check read every
  ticket whose deadline had passed: answered, escalated and abandoned ones too, until
  retention took them.

The index on the department alone goes: no statement filters on it, and the polls'
grouping by it had SQLite read the whole table in its order.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"

# As the check's statement writes them (literals, not parameters: a partial index is
# used only for what the statement's own text implies).
ESCALATION_DUE = {"sqlite": "escalated IS 0 AND service_clocks IS NULL",
                  "postgresql": "escalated IS false AND service_clocks IS NULL"}


def upgrade() -> None:
    op.create_index("ix_routed_tickets_status_department", "routed_tickets",
                    ["status", "department", "updated_at"])
    op.create_index("ix_routed_tickets_first_response", "routed_tickets",
                    ["first_response_at", "department"])
    op.create_index("ix_routed_tickets_escalation_due", "routed_tickets",
                    ["first_response_at", "first_response_deadline"],
                    sqlite_where=sa.text(ESCALATION_DUE["sqlite"]),
                    postgresql_where=sa.text(ESCALATION_DUE["postgresql"]))
    op.drop_index("ix_routed_tickets_first_response_deadline", table_name="routed_tickets")
    op.drop_index("ix_routed_tickets_department", table_name="routed_tickets")


def downgrade() -> None:
    op.create_index("ix_routed_tickets_department", "routed_tickets", ["department"])
    op.create_index("ix_routed_tickets_first_response_deadline", "routed_tickets",
                    ["first_response_deadline"])
    op.drop_index("ix_routed_tickets_escalation_due", table_name="routed_tickets")
    op.drop_index("ix_routed_tickets_first_response", table_name="routed_tickets")
    op.drop_index("ix_routed_tickets_status_department", table_name="routed_tickets")
