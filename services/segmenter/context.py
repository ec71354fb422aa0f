"""The evaluation context of a ticket: what segment rules can read. Pure decision code."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Any

from services.core import groups
from services.core.tickets import Ticket
from services.segmenter.profiles import (
    Customer,
    CustomerProfile,
    CustomerType,
    Tier,
    ValueFeatures,
)


def build(customer: Customer, ticket: Ticket | None, *, today: date) -> dict[str, Any]:
    """Built once per ticket, shared by every rule."""
    return {
        "customer": customer_view(customer.customer_id, customer.profile, today),
        "features": features_view(customer.features),
        "tier": str(customer.tier),
        "ticket": ticket_view(ticket),
    }


def customer_view(customer_id: str, profile: CustomerProfile | None,
                  today: date) -> dict[str, Any]:
    if profile is None:
        return {"id": customer_id, "known": False, "type": None, "country": None,
                "language": None, "gender": None, "birth_date": None, "age_years": None,
                "socio_economic_band": None, "signup_date": None, "attributes": {}}
    return {
        "id": customer_id,
        "known": True,
        "type": str(profile.customer_type),
        "country": profile.country,
        "language": profile.language,
        "gender": profile.gender,
        "birth_date": profile.birth_date.isoformat() if profile.birth_date else None,
        "age_years": groups.age_years(profile.birth_date, today),
        "socio_economic_band": profile.socio_economic_band,
        "signup_date": profile.signup_date.isoformat() if profile.signup_date else None,
        "attributes": dict(profile.attributes),
    }


def features_view(features: ValueFeatures) -> dict[str, Any]:
    return {
        "recency": features.recency,
        "frequency": features.frequency,
        "monetary": features.monetary,
        "total_value": features.total_value,
        "trailing_12m_value": features.trailing_12m_value,
        "growth": features.growth,
        "growth_ratio": features.growth_ratio,
        "tenure_days": features.tenure_days,
        "purchases": features.purchases,
        "tickets_raised": features.tickets_raised,
    }


def ticket_view(ticket: Ticket | None) -> dict[str, Any]:
    if ticket is None:  # explaining a customer's segment outside any ticket
        return {"kind": None, "channel": None, "language": None, "attributes": {}}
    return {"kind": ticket.kind, "channel": ticket.channel, "language": ticket.language,
            "attributes": dict(ticket.attributes)}


def probes(today: date) -> list[dict[str, Any]]:
    """Contexts every rule must evaluate on: an unknown customer and a known one."""
    unknown = Customer("probe-unknown", None, ValueFeatures(), Tier.POTENTIAL)
    known = Customer(
        "probe-known",
        CustomerProfile("probe-known", CustomerType.INDIVIDUAL, birth_date=date(1990, 1, 1),
                        gender="female", country="NL", language="nl",
                        socio_economic_band="middle", signup_date=date(2020, 1, 1)),
        ValueFeatures(recency=3, frequency=3, monetary=3, total_value=100.0, purchases=2),
        Tier.EXISTING)
    sample = Ticket(ticket_id="probe", customer_id="probe", subject="probe", body="",
                    channel="email", received_at=datetime.combine(today, time(), UTC))
    return [build(unknown, sample, today=today), build(known, sample, today=today)]
