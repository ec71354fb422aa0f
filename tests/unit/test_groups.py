"""The bands of the protected attributes README's "Service parity across protected groups"
names: a customer's age, gender and socio-economic band turned into one of a few fixed
names, `other` for a value outside them, `unknown` for none."""

from datetime import date

import pytest

from services.core import groups

TODAY = date(2026, 12, 6)


class TestAgeBands:
    @pytest.mark.parametrize(("age", "band"), [
        (0, "under_25"), (24, "under_25"), (25, "25_34"), (34, "25_34"), (35, "35_49"),
        (49, "35_49"), (50, "50_64"), (64, "50_64"), (65, "65_plus"), (102, "65_plus"),
        (None, "unknown"), (-1, "unknown")])
    def test_each_age_falls_in_its_band(self, age: int | None, band: str) -> None:
        assert groups.age_band(age) == band

    def test_the_age_is_in_whole_years_turned_on_the_birthday(self) -> None:
        assert groups.age_years(date(2001, 12, 7), TODAY) == 24
        assert groups.age_years(date(2001, 12, 6), TODAY) == 25
        assert groups.age_years(None, TODAY) is None


class TestNamedBands:
    @pytest.mark.parametrize(("gender", "band"), [
        ("female", "female"), ("Male", "male"), ("non-binary", "non_binary"),
        ("Non binary", "non_binary"), ("agender", "other"), (None, "unknown"),
        ("", "unknown")])
    def test_a_gender_is_one_of_the_named_bands_other_or_unknown(
            self, gender: str | None, band: str) -> None:
        assert groups.bands(None, gender, None)[groups.GENDER] == band

    @pytest.mark.parametrize(("told", "band"), [
        ("low", "low"), ("Lower middle", "lower_middle"), ("middle", "middle"),
        ("upper-middle", "upper_middle"), ("HIGH", "high"), ("rich", "other"),
        (None, "unknown")])
    def test_a_socio_economic_band_is_low_to_high_other_or_unknown(
            self, told: str | None, band: str) -> None:
        assert groups.bands(None, None, told)[groups.SOCIO_ECONOMIC_BAND] == band


def test_the_bands_readme_names_are_every_band_there_is() -> None:
    assert groups.BANDS == {
        "age_band": ("under_25", "25_34", "35_49", "50_64", "65_plus", "unknown"),
        "gender": ("female", "male", "non_binary", "other", "unknown"),
        "socio_economic_band": ("low", "lower_middle", "middle", "upper_middle", "high",
                                "other", "unknown")}
