"""Tables of the customer store."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, Date, ForeignKey, Numeric, String
from sqlalchemy.orm import Mapped, mapped_column

from services.core import db, identifiers, tiers
from services.core.db import Base
from services.segmenter.profiles import TEXT_LIMITS


class CustomerRow(Base):
    __tablename__ = "customers"

    customer_id: Mapped[str] = mapped_column(String(identifiers.MAX_LENGTH), primary_key=True)
    customer_type: Mapped[str] = mapped_column(String(16))
    # Personal data: used for segmentation where rules allow, never logged.
    name: Mapped[str | None] = mapped_column(String(TEXT_LIMITS["name"]))
    email: Mapped[str | None] = mapped_column(String(TEXT_LIMITS["email"]))
    birth_date: Mapped[date | None] = mapped_column(Date)
    gender: Mapped[str | None] = mapped_column(String(TEXT_LIMITS["gender"]))
    country: Mapped[str | None] = mapped_column(String(2))
    language: Mapped[str | None] = mapped_column(String(TEXT_LIMITS["language"]))
    socio_economic_band: Mapped[str | None] = mapped_column(
        String(TEXT_LIMITS["socio_economic_band"]))
    signup_date: Mapped[date | None] = mapped_column(Date)
    attributes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class PurchaseRow(Base):
    __tablename__ = "purchases"

    purchase_id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    customer_id: Mapped[str] = mapped_column(
        ForeignKey("customers.customer_id", ondelete="CASCADE"), index=True)
    amount: Mapped[Decimal] = mapped_column(Numeric(14, 2))
    currency: Mapped[str] = mapped_column(String(3))
    purchased_at: Mapped[datetime] = mapped_column(db.UtcDateTime())


class CustomerFeaturesRow(Base):
    """A customer's value features and tier, kept up to date as purchases arrive."""

    __tablename__ = "customer_features"

    customer_id: Mapped[str] = mapped_column(
        ForeignKey("customers.customer_id", ondelete="CASCADE"), primary_key=True)
    total_value: Mapped[float] = mapped_column(default=0.0)
    trailing_12m_value: Mapped[float] = mapped_column(default=0.0)
    growth: Mapped[float] = mapped_column(default=0.0)
    growth_ratio: Mapped[float] = mapped_column(default=0.0)
    purchases: Mapped[int] = mapped_column(default=0)
    last_purchase_at: Mapped[datetime | None] = mapped_column(db.UtcDateTime())
    tickets_raised: Mapped[int] = mapped_column(default=0)
    tier: Mapped[str] = mapped_column(String(16), default=tiers.Tier.POTENTIAL.value, index=True)
    computed_at: Mapped[datetime] = mapped_column(db.UtcDateTime())


class TierCutoffsRow(Base):
    """The population run's cutoffs (one row per run; the newest is in force)."""

    __tablename__ = "tier_cutoffs"

    run_id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    computed_at: Mapped[datetime] = mapped_column(db.UtcDateTime(), index=True)
    cutoffs: Mapped[dict[str, Any]] = mapped_column(JSON)
    customers: Mapped[int] = mapped_column(default=0)
