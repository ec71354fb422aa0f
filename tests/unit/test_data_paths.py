"""Where a record's data failed its check, as logs and dead-letter headers name it: the
fields of the data the pipeline reads, never a key its writer chose (a map's key may be
personal data)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from services.core import data_paths, envelope, events, faults, tickets
from services.webhooks import payloads

NOW = datetime(2026, 1, 31, 9, 30, tzinfo=UTC)


def ticket(**changed: Any) -> dict[str, Any]:
    return {"ticket_id": "t-1", "customer_id": "c-1", "subject": "s", "body": "b",
            "channel": "email", "received_at": NOW.isoformat(), **changed}


def reason_of(model: type[BaseModel], data: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as refused:
        model.model_validate(data)
    return faults.reason(refused.value)


class TestAMapsKeysAreNotNamed:
    @pytest.mark.parametrize("key", ["Jane Doe", "jane.doe", "john_smith-1980"])
    def test_an_attribute_whose_value_is_refused(self, key: str) -> None:
        reason = reason_of(tickets.Ticket, ticket(attributes={key: [1]}))
        assert key not in reason
        assert reason == (f"attributes.(an unknown name: {len(key)} characters, not shown):"
                          " Value error, an attribute is text, a number or true/false")

    def test_an_attribute_whose_name_is_refused(self) -> None:
        key = "jane.doe@example.org" * 4
        reason = reason_of(tickets.Ticket, ticket(attributes={key: 1}))
        assert "jane" not in reason
        assert reason.startswith("attributes.(an unknown name: 80 characters, not shown).[key]:")

    def test_a_segmentations_decided_by_key(self) -> None:
        segmentation = {"segment": "vip", "rule": "r", "rules_version": "1",
                        "customer_known": True, "tier": "existing",
                        "decided_by": {"john_smith": [1]}}
        reason = reason_of(tickets.SegmentedTicket, ticket(segmentation=segmentation))
        assert "john_smith" not in reason
        assert reason.startswith("segmentation.decided_by.(an unknown name: 10 characters")

    def test_a_lifecycle_events_map_key(self) -> None:
        reason = reason_of(events.TicketEvent, {
            "ticket_id": "t-1", "type": "ticket.routed", "occurred_at": NOW.isoformat(),
            "outcomes": {"jane.doe": "late", "x" * 41: "met"}})
        assert "jane.doe" not in reason
        assert reason == (
            "outcomes.(an unknown name: 8 characters, not shown): Input should be 'met' or"
            " 'missed'; outcomes.(an unknown name: 41 characters, not shown).[key]: String"
            " should have at most 40 characters")


class TestFieldsAreNamed:
    def test_a_field_and_an_index(self) -> None:
        assert data_paths.path_of(("routing", "explanation", 1)) == "routing.explanation.1"

    def test_a_key_that_is_a_fields_name_is_named(self) -> None:
        """A field's name is the project's own word, not the writer's."""
        assert data_paths.path_of(("attributes", "subject")) == "attributes.subject"

    def test_the_whole(self) -> None:
        assert data_paths.path_of(()) == "record"
        assert data_paths.path_of((), whole="data") == "data"

    def test_every_field_of_a_routed_ticket_and_an_event_is_known(self) -> None:
        nested = set(tickets.Segmentation.model_fields) | set(tickets.Routing.model_fields)
        assert (set(tickets.RoutedTicket.model_fields) | nested
                | set(events.TicketEvent.model_fields)) <= data_paths.FIELD_NAMES

    def test_a_deadlines_key_is_named(self) -> None:
        """A clock target keying `deadlines` is a word of the event's type, not the
        writer's: the reason says which deadline failed."""
        reason = reason_of(events.TicketEvent, {
            "ticket_id": "t-1", "type": "ticket.deadlines_changed",
            "occurred_at": NOW.isoformat(), "deadlines": {"resolution": "soon"}})
        assert reason.startswith("deadlines.resolution: Input should be a valid datetime")

    def test_the_choices_of_a_fields_union_are_named(self) -> None:
        """A tier is one of the tiers, or "unknown": pydantic names each choice that
        refused it (its own words for our types), which the reason keeps, as it keeps the
        field; the value is not quoted."""
        segmentation = {"segment": "vip", "rule": "r", "rules_version": "1",
                        "customer_known": True, "tier": "Jane Doe"}
        reason = reason_of(tickets.SegmentedTicket, ticket(segmentation=segmentation))
        assert "Jane" not in reason and "unknown name" not in reason
        assert reason == (
            "segmentation.tier.str-enum[Tier]: Input should be 'most_valuable',"
            " 'most_growable', 'existing' or 'potential'; segmentation.tier.literal['unknown']:"
            " Input should be 'unknown'")


class TestAServicesOwnRecordsAreNamed:
    """A callback's data (services.webhooks, which core does not import) is made known by
    the module defining it: its fields are named as the pipeline's are, a writer's key is
    still told by its length."""

    def callback_data(self, **changed: Any) -> dict[str, Any]:
        return {"ticket_id": "t-1", "type": "ticket.routed", "occurred_at": NOW.isoformat(),
                "correlation_id": "c-1", **changed}

    def test_a_callbacks_correlation_id_is_named(self) -> None:
        too_long = "Jane Doe " * envelope.MAX_CORRELATION_ID
        reason = reason_of(payloads.CallbackData, self.callback_data(correlation_id=too_long))
        assert reason == (f"correlation_id: String should have at most"
                          f" {envelope.MAX_CORRELATION_ID} characters")

    def test_a_writers_key_in_a_callbacks_data_is_not_named(self) -> None:
        reason = reason_of(payloads.CallbackData, self.callback_data(
            correlation_id=["c-1"], outcomes={"Jane Doe": "late"}))
        assert "Jane" not in reason
        assert reason == (
            "outcomes.(an unknown name: 8 characters, not shown): Input should be 'met' or"
            " 'missed'; correlation_id: Input should be a valid string")
