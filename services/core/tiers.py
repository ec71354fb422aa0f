"""Customer differentiation tiers: the segmenter computes them, the router's service
levels are written per tier. One definition both import."""

from __future__ import annotations

from enum import StrEnum
from typing import Final, Literal


class Tier(StrEnum):
    MOST_VALUABLE = "most_valuable"
    MOST_GROWABLE = "most_growable"
    EXISTING = "existing"
    POTENTIAL = "potential"  # unknown to the store, or no purchases yet


NAMES: tuple[str, ...] = tuple(tier.value for tier in Tier)
# A ticket's tier when its customer could not be looked up (the store was down past its
# grace period): no tier's service level applies to it.
UNKNOWN: Final = "unknown"
TicketTier = Tier | Literal["unknown"]
