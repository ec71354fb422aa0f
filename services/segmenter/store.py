"""The customer store: profiles, purchases and what segmentation reads of them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.segmenter import features
from services.segmenter.models import CustomerRow, PurchaseRow
from services.segmenter.profiles import (
    NO_FEATURES,
    Customer,
    CustomerProfile,
    CustomerType,
    Tier,
)


def to_profile(row: CustomerRow) -> CustomerProfile:
    return CustomerProfile(
        customer_id=row.customer_id, customer_type=CustomerType(row.customer_type),
        birth_date=row.birth_date, gender=row.gender, country=row.country,
        language=row.language, socio_economic_band=row.socio_economic_band,
        signup_date=row.signup_date, attributes=row.attributes or {})


class CustomerStore:
    def __init__(self, sessions: async_sessionmaker[AsyncSession],
                 policy: features.TierPolicy | None = None) -> None:
        self._sessions = sessions
        self._policy = policy or features.TierPolicy()
        self.cutoffs = features.DEFAULT_CUTOFFS

    async def customer(self, customer_id: str, *, now: datetime) -> Customer:
        """The customer as segmentation sees it; an unknown id is a potential customer."""
        async with self._sessions() as session:
            row = await session.get(CustomerRow, customer_id)
            if row is None:
                return Customer(customer_id, None, NO_FEATURES, Tier.POTENTIAL)
            purchases = (await session.execute(
                select(PurchaseRow.amount, PurchaseRow.purchased_at)
                .where(PurchaseRow.customer_id == customer_id))).all()
        raw = features.raw_features(
            (features.Purchase(float(amount), at) for amount, at in purchases),
            signup_date=row.signup_date, tickets_raised=0, now=now)
        value = features.scored(raw, self.cutoffs, now=now)
        return Customer(customer_id, to_profile(row), value,
                        features.tier_of(value, self.cutoffs, self._policy))
