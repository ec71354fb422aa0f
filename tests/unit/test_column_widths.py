"""The stores' text columns are as wide as the rules that bound what goes in them: a rule
changed without its columns (or a column without its rule) fails here, before a value the
API accepts is one the store refuses or cuts."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import pytest
from sqlalchemy import String

from services.core import (
    access,
    admin_actions,
    credentials,
    envelope,
    events,
    identifiers,
    lifecycle,
    tickets,
    tiers,
    topics,
    versions,
)
from services.core.admin_actions import AdminActionRow
from services.core.fleet_models import ConfigVersionRow
from services.metrics.store import TimelineRow
from services.router import intake_policy
from services.router.models import ErasedCustomerRow, IntakeKeyRow, RoutedTicketRow
from services.segmenter import profiles
from services.segmenter.models import CustomerFeaturesRow, CustomerRow
from services.webhooks import catalog, models
from services.webhooks.models import WebhookDeliveryRow, WebhookEndpointRow


def width(column: Any) -> int:
    kind = column.type
    assert isinstance(kind, String) and kind.length is not None
    return kind.length


# Each column and the one definition of what it holds.
BOUNDED = [
    *[(column, identifiers.MAX_LENGTH) for column in (
        RoutedTicketRow.ticket_id, RoutedTicketRow.customer_id, IntakeKeyRow.ticket_id,
        ErasedCustomerRow.customer_id, CustomerRow.customer_id, TimelineRow.ticket_id,
        WebhookDeliveryRow.ticket_id)],
    *[(column, topics.MAX_NAME) for column in (
        RoutedTicketRow.department, RoutedTicketRow.segment,
        RoutedTicketRow.first_response_department, TimelineRow.department,
        TimelineRow.segment, TimelineRow.target_department)],
    *[(column, access.MAX_SUBJECT) for column in (
        credentials.CredentialRow.subject, WebhookEndpointRow.platform,
        WebhookDeliveryRow.platform)],
    (RoutedTicketRow.platform, tickets.MAX_PLATFORM),
    (RoutedTicketRow.routed_event_id, envelope.MAX_EVENT_ID),
    (IntakeKeyRow.event_id, envelope.MAX_EVENT_ID),
    (RoutedTicketRow.correlation_id, envelope.MAX_CORRELATION_ID),
    (IntakeKeyRow.correlation_id, envelope.MAX_CORRELATION_ID),
    (IntakeKeyRow.idempotency_key, intake_policy.KEY_MAX_LENGTH),
    (TimelineRow.routing_reason, events.MAX_ROUTING_REASON),
    (ConfigVersionRow.version, versions.MAX_VERSION),
    (ConfigVersionRow.author, versions.MAX_AUTHOR),
    (ConfigVersionRow.comment, versions.MAX_COMMENT),
    (credentials.CredentialRow.label, credentials.MAX_LABEL),
    (credentials.CredentialRow.rate_limit, credentials.MAX_RATE),
    (credentials.CredentialRow.byte_rate_limit, credentials.MAX_RATE),
    (WebhookEndpointRow.url, catalog.MAX_URL_LENGTH),
    (AdminActionRow.target, admin_actions.MAX_TARGET),
    (AdminActionRow.actor, versions.MAX_AUTHOR),
    (AdminActionRow.change, admin_actions.MAX_CHANGE),
    *[(CustomerRow.__table__.c[field], limit)
      for field, limit in profiles.TEXT_LIMITS.items()],
]


class TestColumnsAsWideAsTheirRules:
    @pytest.mark.parametrize(("column", "limit"), BOUNDED, ids=str)
    def test_column_width_is_the_rules_limit(self, column: Any, limit: int) -> None:
        assert width(column) == limit


class TestWhatFlowsFromOneColumnToAnotherFits:
    def test_a_correlation_id_the_intake_takes_fits_the_records_and_the_stores(self) -> None:
        assert intake_policy.CORRELATION_ID_MAX_LENGTH <= envelope.MAX_CORRELATION_ID

    def test_a_department_credential_names_any_department(self) -> None:
        assert access.MAX_SUBJECT >= topics.MAX_NAME

    def test_a_platforms_subject_fits_its_tickets_platform(self) -> None:
        assert access.MAX_SUBJECT <= tickets.MAX_PLATFORM

    def test_an_admin_actions_target_names_a_credential_or_a_platform(self) -> None:
        assert width(credentials.CredentialRow.credential_id) <= admin_actions.MAX_TARGET
        assert width(WebhookEndpointRow.platform) <= admin_actions.MAX_TARGET

    def test_a_callbacks_id_and_event_name_fit_their_columns(self) -> None:
        assert len(catalog.delivery_id("x" * envelope.MAX_EVENT_ID)) <= width(
            WebhookDeliveryRow.delivery_id)
        assert max(map(len, catalog.WEBHOOK_EVENTS.values())) <= width(
            WebhookDeliveryRow.event_type)


def longest(values: type[StrEnum] | tuple[str, ...]) -> int:
    return max(len(str(value)) for value in values)


class TestStatusesFitTheirColumns:
    @pytest.mark.parametrize(("column", "values"), [
        (RoutedTicketRow.status, lifecycle.Status),
        (CustomerFeaturesRow.tier, tiers.Tier),
        (credentials.CredentialRow.role, access.Role),
        (CustomerRow.customer_type, profiles.CustomerType),
        (WebhookDeliveryRow.status, (models.PENDING, *models.FINISHED)),
        (AdminActionRow.action, admin_actions.Action),
    ], ids=str)
    def test_longest_value_fits(self, column: Any,
                                values: type[StrEnum] | tuple[str, ...]) -> None:
        assert longest(values) <= width(column)
