"""The routing tables, tickets and moments the routing tests decide with: a simple table,
a policy with service levels, refinements, calendars and overflow, and `decide` over them."""

from datetime import UTC, datetime
from typing import Any

from services.core import config_files
from services.router import routing, table_parsing

SIMPLE = routing.RoutingTable.simple(
    "v1", {"government": "public_sector", "vip": "key_accounts"}, "general")
MONDAY_NOON = datetime(2025, 1, 6, 11, 0, tzinfo=UTC)  # 12:00 in Amsterdam
SATURDAY_NOON = datetime(2025, 1, 4, 11, 0, tzinfo=UTC)
TICKET = {"kind": "question", "channel": "email", "language": "nl", "attributes": {}}
COMPLAINT = {**TICKET, "kind": "complaint"}

OFFICE = ("{time_zone: Europe/Amsterdam, hours: {mon-fri: '08:00-18:00'},"
          " holidays: [2025-12-25]}")
POLICY = f"""\
version: v3
fallback_department: customer_care
defaults:
  priority: 4
  first_response_target: 1d
routes:
  - segment: government
    department: public_sector
    priority: 2
    first_response_target: 4h
  - segment: business
    department: business_desk
    first_response_target: 8h
    tiers:
      most_valuable: {{priority: 2, first_response_target: 2h}}
  - segment: key_accounts
    department: key_accounts
    priority: 2
    first_response_target: 1h
    refinements:
      - name: key-account-complaints
        when: ticket.kind == "complaint"
        priority: 1
        first_response_target: 30m
      - name: phone
        when: ticket.channel == "phone"
        department: customer_care
departments:
  public_sector: {{calendar: {OFFICE}, escalation_to: key_accounts}}
  business_desk:
    calendar: {OFFICE}
    after_hours: {{route_to: key_accounts}}
  key_accounts: {{}}
  sales_support: {{calendar: {OFFICE}}}
  customer_care:
    overflow: {{to: sales_support, max_backlog: 100, resume_below: 0.8}}
"""


def parse(text: str) -> routing.RoutingTable:
    return table_parsing.parse_table(config_files.load_yaml("routing.yaml", text),
                               source="routing.yaml", version="test")


TABLE = parse(POLICY)


def decide(segment: str, *, tier: str = "existing", ticket: dict[str, Any] = TICKET,
           now: datetime = MONDAY_NOON, table: routing.RoutingTable = TABLE,
           **overflow_inputs: Any) -> routing.RoutingDecision:
    return routing.decide(segment, tier, ticket, table, now=now, **overflow_inputs)


ROUTES = "fallback_department: general\nroutes:\n  - {segment: a, department: b}\n"
