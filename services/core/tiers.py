"""Customer differentiation tiers: the segmenter computes them, the router's service
levels are written per tier. One definition both import."""

from __future__ import annotations

from enum import StrEnum


class Tier(StrEnum):
    MOST_VALUABLE = "most_valuable"
    MOST_GROWABLE = "most_growable"
    EXISTING = "existing"
    POTENTIAL = "potential"  # unknown to the store, or no purchases yet


NAMES: tuple[str, ...] = tuple(tier.value for tier in Tier)
