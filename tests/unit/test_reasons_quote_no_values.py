"""A record read from Kafka and refused is told in logs and dead-letter headers by
faults.reason: by its fields and what was wrong, never by what it holds. Swept over every
field and map key of the records the stages read (and a callback's data, which the
outbox writer builds from one), with text holding personal data put where it does not
fit: a validator that starts quoting its input fails here.

Customer import rows are swept too: their reasons come back in answers and logs."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from services.core import events, faults, tickets
from services.segmenter import rows
from services.webhooks import payloads

SENTINEL = "Jane Doe 1980-01-01 jane@example.org"
# Its words as a reason must not show them, whatever the case.
WORDS = ("jane", "doe", "1980", "example")
NOW = datetime(2026, 1, 31, 9, 30, tzinfo=UTC).isoformat()

ROUTED_TICKET: dict[str, Any] = {
    "ticket_id": "t-1", "customer_id": "c-1", "subject": "s", "body": "b",
    "channel": "email", "kind": "question", "language": "nl",
    "attributes": {"plan": "gold", "seats": 3}, "received_at": NOW, "platform": "shop",
    "segmentation": {"segment": "vip", "rule": "r", "rules_version": "1",
                     "customer_known": True, "tier": "existing",
                     "decided_by": {"customer.country": "NL"}, "degraded": "d"},
    "routing": {"department": "billing", "reason": "route", "entry": "vip",
                "table_version": "1", "routed_at": NOW, "queue": "q", "priority": 2,
                "priority_aging_seconds": 600.0, "first_response_target_seconds": 60.0,
                "first_response_deadline": NOW, "overflowed_from": "sales",
                "explanation": ["routed"]}}
EVENT: dict[str, Any] = {
    "ticket_id": "t-1", "type": "ticket.routed", "occurred_at": NOW, "received_at": NOW,
    "department": "billing", "segment": "vip", "reason": "route", "from_department": "sales",
    "priority": 2, "first_response_deadline": NOW, "platform": "shop",
    "deadlines": {"resolution": NOW}, "paused": False, "target": "resolution", "level": 1,
    "outcomes": {"first_response": "met"}}
# A callback's data (services.webhooks): the event, with the ticket's correlation id.
CALLBACK_DATA: dict[str, Any] = {**EVENT, "correlation_id": "c-1"}


def carriers(text: str) -> list[Any]:
    """Ways of putting `text` where a record's field or map value does not take it."""
    return [text, text + "\x00", text + "\ud800", text * 200, [text], {text: text},
            {"x": text}, text.replace(" ", "_"),
            # Shaped as a language tag but for its underscores (doe-Jane-1980).
            "Doe_Jane_1980"]


def places(data: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """The path of every field, map value and list item within `data`."""
    items = data.items() if isinstance(data, dict) else (
        enumerate(data) if isinstance(data, list) else ())
    for key, value in items:
        yield (*path, key)
        yield from places(value, (*path, key))


def put(data: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    changed = copy.deepcopy(data)
    holder = changed
    for part in path[:-1]:
        holder = holder[part]
    holder[path[-1]] = value
    return changed


def keyed(data: dict[str, Any], path: tuple[Any, ...], key: str) -> dict[str, Any] | None:
    """`data` with the map at `path` holding `key` (None if no map is there)."""
    holder: Any = data
    for part in path:
        holder = holder[part]
    if not isinstance(holder, dict):
        return None
    return put(data, path, {**holder, key: [key]})


def refusals(model: type[BaseModel], data: dict[str, Any]) -> Iterator[tuple[Any, str]]:
    """faults.reason for each way of refusing `data` with the sentinel in it."""
    for path in places(data):
        for value in carriers(SENTINEL):
            for changed in (put(data, path, value), keyed(data, path, SENTINEL)):
                if changed is None:
                    continue
                try:
                    model.model_validate(changed)
                except ValidationError as refused:
                    yield path, faults.reason(refused)


def quoted(reason: str) -> list[str]:
    return [word for word in WORDS
            if re.search(rf"(?<![a-z0-9]){word}(?![a-z0-9])", reason.lower())]


@pytest.mark.parametrize(("model", "data"), [
    (tickets.Ticket, ROUTED_TICKET), (tickets.SegmentedTicket, ROUTED_TICKET),
    (tickets.RoutedTicket, ROUTED_TICKET), (events.TicketEvent, EVENT),
    (payloads.CallbackData, CALLBACK_DATA)],
    ids=["Ticket", "SegmentedTicket", "RoutedTicket", "TicketEvent", "CallbackData"])
def test_a_refused_records_reason_quotes_none_of_its_values(
        model: type[BaseModel], data: dict[str, Any]) -> None:
    model.model_validate(data)  # the record as written is valid: each change is refused
    found = list(refusals(model, data))
    quoting = [(path, reason) for path, reason in found if quoted(reason)]
    assert quoting == []
    # Not a sweep of nothing: every field the model reads was refused somehow.
    assert {path[0] for path, _ in found} >= set(model.model_fields) & set(data)


CUSTOMER = {"customer_id": "c-1", "customer_type": "individual", "name": "n",
            "email": "e", "birth_date": "1990-05-01", "gender": "g", "country": "NL",
            "language": "nl", "socio_economic_band": "b", "signup_date": "2020-01-01",
            "attributes": {"club": "gold"}}
PURCHASE = {"customer_id": "c-1", "amount": "19.99", "currency": "EUR",
            "purchased_at": "2026-01-01T10:00:00+01:00"}


@pytest.mark.parametrize(("kind", "data"), [("customers", CUSTOMER), ("purchases", PURCHASE)])
def test_a_refused_import_rows_reason_quotes_none_of_its_values(
        kind: rows.Kind, data: dict[str, Any]) -> None:
    today = date(2026, 1, 31)
    refused = []
    for path in places(data):
        for value in carriers(SENTINEL):
            for changed in (put(data, path, value), keyed(data, path, SENTINEL)):
                if changed is None:
                    continue
                row = rows.parse_record(kind, 1, changed, today=today)
                if isinstance(row, rows.RowError):
                    refused.append((path, row.reason))
    assert [(path, reason) for path, reason in refused if quoted(reason)] == []
    assert {path[0] for path, _ in refused} == set(data)
