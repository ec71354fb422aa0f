"""The evaluation context of a ticket: what segment rules can read. Pure decision code."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, time
from typing import Any

from services.core import groups, tickets
from services.core.tickets import Ticket
from services.segmenter.profiles import (
    MAX_CUSTOMER_ATTRIBUTES,
    NO_FEATURES,
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
        "ticket": tickets.rule_view(ticket),
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


# What rules can read of any customer, known or not, each as `customer.<field>`.
CUSTOMER_FIELDS = tuple(customer_view("", None, date.min))


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


# What rules can read of each record in the context, as `<record>.<field>`: every
# context has each of these fields (a value or null), and no other. A rule reading
# another is refused at load (rules_file): behind has() it would never hold.
RECORD_FIELDS = {"customer": CUSTOMER_FIELDS,
                 "features": tuple(features_view(NO_FEATURES)),
                 "ticket": tuple(tickets.rule_view(None))}
# The field of a record that is free-form: read by any name (`customer.attributes.club`),
# as a customer or ticket may have it or not (has()).
FREE_FORM = "attributes"


def field_paths(record: str) -> tuple[str, ...]:
    """A record's fields as rules read them: ('customer.id', 'customer.known', ...)."""
    return tuple(f"{record}.{field}" for field in RECORD_FIELDS[record])


def unknown_field(path: str) -> str | None:
    """The field `path` reads of a record that the record does not have
    ('customer.agee_years' for `customer.agee_years.x`), or None: a field it has (within
    its free-form attributes, any name), or a whole record or `tier`."""
    record, _, selected = path.partition(".")
    field = selected.partition(".")[0]
    if record not in RECORD_FIELDS or not field or field in RECORD_FIELDS[record]:
        return None
    return f"{record}.{field}"


def accepted_fields(record: str) -> str:
    """A record's fields in words, for an error that names one it does not have."""
    free_form = (f", or {record}.{FREE_FORM}.<name>"
                 if FREE_FORM in RECORD_FIELDS[record] else "")
    return ", ".join(field_paths(record)) + free_form


def probes(today: date) -> list[dict[str, Any]]:
    """Contexts every rule must evaluate on, so that a rule reading a field that may be
    null without a guard is refused at load rather than skipped on real tickets: an
    unknown customer; a known one with a full profile; a known one of each type with only
    its type (every other field null); each with tickets of every kind (and none) on
    every channel, language null, and a ticket with every field set
    (tickets.probe_tickets)."""
    full = Customer("probe-known", _full_profile("probe-known", CustomerType.INDIVIDUAL),
                    _SOME_PURCHASES, Tier.EXISTING)
    customers = [Customer("probe-unknown", None, ValueFeatures(), Tier.POTENTIAL), full,
                 *(Customer(f"probe-{kind}", CustomerProfile(f"probe-{kind}", kind),
                            ValueFeatures(), Tier.POTENTIAL) for kind in CustomerType)]
    on_tickets = tickets.probe_tickets(datetime.combine(today, time(), UTC))
    return [build(customer, ticket, today=today) for customer in customers
            for ticket in on_tickets]


def largest(today: date) -> list[dict[str, Any]]:
    """Contexts a rule is checked on for CEL's iteration budget alone (rules_file): a
    known customer of each type with a full profile and the most attributes a customer
    may have, each of the longest text and no two alike, on the largest ticket
    (tickets.largest_ticket). Loops over them past the budget are refused at load; any
    other failure on them is left to run time, where the rule does not hold."""
    on = tickets.largest_ticket(datetime.combine(today, time(), UTC))
    return [build(Customer(f"probe-{kind}", _full_profile(
        f"probe-{kind}", kind, attributes=tickets.most_attributes(MAX_CUSTOMER_ATTRIBUTES)),
        _SOME_PURCHASES, Tier.EXISTING), on, today=today) for kind in CustomerType]


# A probe customer's features: a few purchases, every score set.
_SOME_PURCHASES = ValueFeatures(recency=3, frequency=3, monetary=3, total_value=100.0,
                                purchases=2)


def _full_profile(customer_id: str, kind: CustomerType,
                  attributes: Mapping[str, Any] | None = None) -> CustomerProfile:
    return CustomerProfile(customer_id, kind, birth_date=date(1990, 1, 1), gender="female",
                           country="NL", language="nl", socio_economic_band="middle",
                           signup_date=date(2020, 1, 1), attributes=attributes or {})


def describe_probe(probe: Mapping[str, Any]) -> str:
    """A probe context in words, for the error that names the one a rule failed on."""
    customer = probe["customer"]
    if not customer["known"]:
        who = "an unknown customer"
    elif customer["country"] is None:
        who = f"a known {customer['type']} customer with no profile field but its type"
    elif len(customer["attributes"]) >= MAX_CUSTOMER_ATTRIBUTES:
        who = (f"a known {customer['type']} customer with a full profile and"
               f" {len(customer['attributes'])} attributes (the most a customer has)")
    else:
        who = "a known customer with a full profile"
    return f"{who}, on {tickets.describe_view(probe['ticket'])}"
