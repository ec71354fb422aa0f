"""Protected customer groups: the band of each protected attribute a customer falls in.
Pure decision code, shared by service parity (metrics) and proxy detection (segmenter).

A band is a short, bounded name ("35_49", "female", "middle"): never a value such as a
birth date or an exact age, so a band may stand in a metric label or a report. A value
outside the known bands is "other"; a missing one "unknown".
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any, Final, Literal, get_args

Attribute = Literal["age_band", "gender", "socio_economic_band"]
AGE_BAND: Final = "age_band"
GENDER: Final = "gender"
SOCIO_ECONOMIC_BAND: Final = "socio_economic_band"
ATTRIBUTES: tuple[Attribute, ...] = get_args(Attribute)

# The rule paths (services/segmenter/rules.py) each attribute is read from.
SOURCE_PATHS = {
    AGE_BAND: ("customer.age_years", "customer.birth_date"),
    GENDER: ("customer.gender",),
    SOCIO_ECONOMIC_BAND: ("customer.socio_economic_band",),
}

UNKNOWN = "unknown"
OTHER = "other"
# (lowest age of the band, band); each band runs to the next one's lowest age.
AGE_BANDS = ((0, "under_25"), (25, "25_34"), (35, "35_49"), (50, "50_64"), (65, "65_plus"))
GENDERS = ("female", "male", "non_binary")
SOCIO_ECONOMIC_BANDS = ("low", "lower_middle", "middle", "upper_middle", "high")

# Every band an attribute can take: what bounds the labels of the parity metrics.
BANDS: dict[str, tuple[str, ...]] = {
    AGE_BAND: (*(band for _, band in AGE_BANDS), UNKNOWN),
    GENDER: (*GENDERS, OTHER, UNKNOWN),
    SOCIO_ECONOMIC_BAND: (*SOCIO_ECONOMIC_BANDS, OTHER, UNKNOWN),
}


def age_years(birth_date: date | None, today: date) -> int | None:
    if birth_date is None:
        return None
    before_birthday = (today.month, today.day) < (birth_date.month, birth_date.day)
    return today.year - birth_date.year - before_birthday


def age_band(age: int | None) -> str:
    if age is None or age < 0:
        return UNKNOWN
    return [band for lowest, band in AGE_BANDS if age >= lowest][-1]


def _named_band(value: object, known: tuple[str, ...]) -> str:
    if value is None or value == "":
        return UNKNOWN
    text = str(value).strip().lower().replace("-", "_").replace(" ", "_")
    return text if text in known else OTHER


def bands(age: int | None, gender: object, socio_economic_band: object) -> dict[str, str]:
    """The customer's band of every protected attribute."""
    return {AGE_BAND: age_band(age), GENDER: _named_band(gender, GENDERS),
            SOCIO_ECONOMIC_BAND: _named_band(socio_economic_band, SOCIO_ECONOMIC_BANDS)}


def bands_of_context(customer: Mapping[str, Any]) -> dict[str, str]:
    """The bands of the `customer` part of a segment rules' evaluation context."""
    age = customer.get("age_years")
    return bands(age if isinstance(age, int) else None, customer.get("gender"),
                 customer.get("socio_economic_band"))


def checked_by(protected_paths: tuple[str, ...]) -> tuple[str, ...]:
    """The attributes a rule set's protected paths cover (e.g. customer.gender -> gender)."""
    return tuple(attribute for attribute, paths in SOURCE_PATHS.items()
                 if any(path in protected_paths for path in paths))
