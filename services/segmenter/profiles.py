"""What the segmenter knows of a customer: profile, value features and tier."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from typing import Any

from services.core import tiers


class CustomerType(StrEnum):
    INDIVIDUAL = "individual"
    ORGANISATION = "organisation"
    GOVERNMENT = "government"


Tier = tiers.Tier  # defined with the contracts, in services/core/tiers.py


# The most attributes a customer's profile holds (an import's row, the API's customer).
MAX_CUSTOMER_ATTRIBUTES = 100
# A customer's text fields and the most characters each holds: the store's columns, the
# admin API and the import alike.
TEXT_LIMITS = {"name": 200, "email": 254, "gender": 32, "language": 16,
               "socio_economic_band": 16}


@dataclass(frozen=True, slots=True)
class CustomerProfile:
    customer_id: str
    customer_type: CustomerType
    birth_date: date | None = None
    gender: str | None = None
    country: str | None = None
    language: str | None = None
    socio_economic_band: str | None = None
    signup_date: date | None = None
    attributes: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ValueFeatures:
    """Recency, frequency and monetary scores (1-5; 0 without purchases) and the values
    they come from."""

    recency: int = 0
    frequency: int = 0
    monetary: int = 0
    total_value: float = 0.0
    trailing_12m_value: float = 0.0
    growth: float = 0.0  # spend in the last 90 days minus the 90 before
    growth_ratio: float = 0.0  # the same, relative: -1 (stopped) .. 1 (all new)
    tenure_days: int = 0
    purchases: int = 0
    last_purchase_at: datetime | None = None
    tickets_raised: int = 0


NO_FEATURES = ValueFeatures()


@dataclass(frozen=True, slots=True)
class Customer:
    """Everything segmentation reads about one customer; `profile` is None if unknown."""

    customer_id: str
    profile: CustomerProfile | None
    features: ValueFeatures
    tier: Tier
