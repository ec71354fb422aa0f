"""Topic names: one place, so no service spells a topic on its own."""

from __future__ import annotations

import re

INCOMING = "tickets.incoming"
SEGMENTED = "tickets.segmented"
EVENTS = "tickets.events"
DEAD_LETTERS = "tickets.dlq"
CUSTOMER_EVENTS = "customers.events"
# A configuration version put in force (segment rules, routing table): a nudge to read
# the store, so every instance converges on it.
CONFIG_CHANGES = "config.changes"

PIPELINE = (INCOMING, SEGMENTED, EVENTS, DEAD_LETTERS, CUSTOMER_EVENTS, CONFIG_CHANGES)

DEPARTMENT_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")


def department_queue(department: str) -> str:
    """The Kafka topic a department reads its tickets from."""
    if not DEPARTMENT_NAME.match(department):
        raise ValueError(
            f"department name {department!r} is not valid: use lower-case letters, digits,"
            " '_' or '-', starting with a letter, at most 63 characters"
        )
    return f"dept.{department}"
