"""The router's use cases, each written once.

- `accept_ticket` (accepting.py): a platform's ticket, its idempotency claim, publishing;
- `route`, `replayed` (route.py): a segmented ticket to its department's queue, and
  again as stored when its routing is replayed;
- `record_report`, `customer_replied` (reports.py): a department's or platform's report,
  once under its `Idempotency-Key`;
- `routed_ticket` (known.py): a ticket id as the caller is told of it, routed, held as
  a dead letter or unknown, for each use case on a ticket and its state's read;
- `transfer`, `change_priority`, `escalate_due` (handovers.py): a ticket handed on or
  re-prioritised; escalation and the clocks' notices, for the timer;
- `put_table_in_force`, `open_in_removed` (table.py): an admin's routing table, refused
  while it removes a department holding open tickets unless that is confirmed.

The edges only translate: the HTTP routes (intake.py, platform_reports.py,
tickets_api.py), the router stage (worker.py) and the escalation timer (app.py) call
these with what the bootstrap (bootstrap.py) wired, and map the verdicts they return to
status codes or records. Dependencies come in as arguments typed by protocol
(services/router/ports.py), so the unit tests wire recording fakes through the same
bootstrap.
"""

from services.router.service.accepting import Acceptance, Verdict, accept_ticket
from services.router.service.handovers import (
    Reprioritised,
    Transferred,
    change_priority,
    escalate_due,
    transfer,
)
from services.router.service.known import routed_ticket
from services.router.service.reports import Recorded, ReportKey, customer_replied, record_report
from services.router.service.route import FirstRouting, replayed, route
from services.router.service.table import RemovalCheck, open_in_removed, put_table_in_force
from services.router.service.verdicts import KEY_IN_FLIGHT, KEY_REUSED, Refusal, Refused, held

__all__ = ["KEY_IN_FLIGHT", "KEY_REUSED", "Acceptance", "FirstRouting", "Recorded",
           "Refusal", "Refused", "RemovalCheck", "ReportKey", "Reprioritised", "Transferred",
           "Verdict", "accept_ticket", "change_priority", "customer_replied", "escalate_due",
           "held", "open_in_removed", "put_table_in_force", "record_report", "replayed", "route",
           "routed_ticket", "transfer"]
