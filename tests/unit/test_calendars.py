from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from services.core import config_files, durations
from services.router import calendars, table_calendars

AMSTERDAM = ZoneInfo("Europe/Amsterdam")


def parse(text: str) -> calendars.Calendar:
    document = config_files.load_yaml("routing.yaml", f"calendar:\n{text}")
    return table_calendars.parse_calendar(document["calendar"], source="routing.yaml",
                                          line=1, entry="customer_care")


def local(*args: int) -> datetime:
    return datetime(*args, tzinfo=AMSTERDAM)  # type: ignore[misc]


OFFICE = parse("  time_zone: Europe/Amsterdam\n  hours: {mon-fri: '08:00-18:00'}\n"
               "  holidays: [2025-12-25, '2025-12-26']\n")
NIGHTS = parse("  time_zone: Europe/Amsterdam\n  hours: {mon: '22:00-06:00', sun: '23:00-01:00'}\n")
ALL_DAY = parse("  time_zone: Europe/Amsterdam\n  hours: {mon-sun: '00:00-24:00'}\n")
EARLY_HOURS = parse("  time_zone: Europe/Amsterdam\n  hours: {mon-sun: '00:00-06:00'}\n")
A_MINUTE_A_WEEK = parse("  time_zone: Europe/Amsterdam\n  hours: {mon: '09:00-09:01'}\n")


class TestDurations:
    @pytest.mark.parametrize(("text", "expected"), [
        ("15m", timedelta(minutes=15)), ("4h", timedelta(hours=4)),
        ("2d", timedelta(days=2)), ("1h30m", timedelta(hours=1, minutes=30))])
    def test_parsed(self, text: str, expected: timedelta) -> None:
        assert durations.parse_duration(text) == expected
        assert durations.format_duration(expected) == text

    @pytest.mark.parametrize("text", ["", "0m", "4 hours", "-1h", "h", "30m1h"])
    def test_rejected(self, text: str) -> None:
        with pytest.raises(ValueError):
            durations.parse_duration(text)


class TestDurationBounds:
    def test_the_longest_duration_is_366_days(self) -> None:
        assert durations.parse_duration("366d") == timedelta(days=366)
        assert durations.parse_duration("365d23h59m60s") == timedelta(days=366)

    @pytest.mark.parametrize("text", ["367d", "366d1s", "1000000000000d", "9" * 40 + "s",
                                      "9000000h"])
    def test_longer_is_refused_not_overflowed(self, text: str) -> None:
        with pytest.raises(ValueError, match="longer than 366d, the longest allowed"):
            durations.parse_duration(text)

    def test_a_setting_can_have_its_own_bound(self) -> None:
        with pytest.raises(ValueError, match="longer than 1h"):
            durations.parse_duration("61m", longest=timedelta(hours=1))


class TestGuaranteedBusinessTime:
    def test_a_year_of_office_hours_fits_in_ten_years_of_the_calendar(self) -> None:
        # 50 hours a week, for the 527 whole weeks of the search, less two holidays of
        # ten hours and eleven summer-time hours.
        assert calendars.guaranteed_business_time(OFFICE) == \
            timedelta(hours=527 * 50 - 2 * 10 - 11)

    def test_the_deadline_of_the_guaranteed_time_is_found(self) -> None:
        start = local(2025, 1, 6, 9, 0)
        for calendar in (OFFICE, NIGHTS, EARLY_HOURS, A_MINUTE_A_WEEK):
            calendars.deadline(start, calendars.guaranteed_business_time(calendar), calendar)

    @pytest.mark.parametrize("zone", ["UTC", "Etc/GMT+5", "Asia/Tokyo"])
    def test_a_zone_whose_clocks_never_go_forward_loses_nothing(self, zone: str) -> None:
        calendar = parse(f"  time_zone: {zone}\n  hours: {{mon: '09:00-17:00'}}\n"
                         "  holidays: [2030-01-07]\n")
        assert calendars.guaranteed_business_time(calendar) == timedelta(hours=527 * 8 - 8)

    def test_a_change_to_summer_time_takes_at_most_a_days_opening_hours(self) -> None:
        # Open a minute a week: summer time takes at most that minute, eleven times,
        # not an hour each (which left nothing of the 527 minutes).
        assert calendars.guaranteed_business_time(A_MINUTE_A_WEEK) == \
            timedelta(minutes=527 - 11)

    def test_a_change_to_summer_time_takes_at_most_the_time_it_skips(self) -> None:
        # Lord Howe Island's clocks go forward half an hour a year since 1985; the ten
        # years from 1981 skip most: half an hour to a new standard time, an hour to
        # summer time in 1981-1984, then half an hour in each of six years.
        calendar = parse("  time_zone: Australia/Lord_Howe\n  hours: {mon-fri: '08:00-18:00'}\n")
        assert calendars.guaranteed_business_time(calendar) == \
            timedelta(hours=527 * 50, minutes=-(30 + 4 * 60 + 6 * 30))

    @pytest.mark.parametrize("calendar", ["A_MINUTE_A_WEEK", "OFFICE", "NIGHTS", "ALL_DAY"])
    @pytest.mark.parametrize("start", [datetime(1970, 1, 1, tzinfo=UTC),
                                       datetime(1996, 3, 31, 0, 30, tzinfo=UTC),
                                       datetime(2026, 3, 29, 1, 30, tzinfo=UTC),
                                       datetime(2089, 10, 1, tzinfo=UTC)])
    def test_is_at_most_what_the_span_gives(self, calendar: str, start: datetime) -> None:
        given = globals()[calendar]
        searched = datetime.combine(start.astimezone(AMSTERDAM).date()
                                    + timedelta(days=3700), time(0), AMSTERDAM)
        assert calendars.guaranteed_business_time(given) <= \
            calendars.business_time(start, searched, given)


class TestIsOpen:
    def test_open_inside_office_hours(self) -> None:
        assert OFFICE.is_open(local(2025, 1, 6, 9, 0))

    def test_closed_before_opening_and_at_closing_time(self) -> None:
        assert not OFFICE.is_open(local(2025, 1, 6, 7, 59))
        assert not OFFICE.is_open(local(2025, 1, 6, 18, 0))

    def test_closed_at_the_weekend_and_on_holidays(self) -> None:
        assert not OFFICE.is_open(local(2025, 1, 4, 12, 0))
        assert not OFFICE.is_open(local(2025, 12, 25, 12, 0))

    def test_any_time_zone_is_compared_as_an_instant(self) -> None:
        assert OFFICE.is_open(datetime(2025, 1, 6, 7, 30, tzinfo=UTC))  # 08:30 in Amsterdam

    def test_overnight_hours_run_into_the_next_day(self) -> None:
        assert NIGHTS.is_open(local(2025, 1, 6, 23, 0))  # Monday night
        assert NIGHTS.is_open(local(2025, 1, 7, 5, 59))  # Tuesday early
        assert not NIGHTS.is_open(local(2025, 1, 7, 6, 0))
        assert not NIGHTS.is_open(local(2025, 1, 7, 23, 0))

    def test_sunday_night_runs_into_monday(self) -> None:
        assert NIGHTS.is_open(local(2025, 1, 6, 0, 30))
        assert not NIGHTS.is_open(local(2025, 1, 6, 1, 0))

    def test_naive_time_is_rejected(self) -> None:
        with pytest.raises(ValueError, match="naive"):
            OFFICE.is_open(datetime(2025, 1, 6, 9, 0))  # noqa: DTZ001


class TestBusinessDeadline:
    def test_within_the_same_day(self) -> None:
        assert calendars.deadline(local(2025, 1, 6, 9, 0), timedelta(hours=4), OFFICE) \
            == local(2025, 1, 6, 13, 0)

    def test_start_before_opening_starts_the_clock_at_opening(self) -> None:
        assert calendars.deadline(local(2025, 1, 6, 6, 0), timedelta(hours=1), OFFICE) \
            == local(2025, 1, 6, 9, 0)

    def test_start_after_closing_continues_next_working_day(self) -> None:
        assert calendars.deadline(local(2025, 1, 6, 18, 0), timedelta(minutes=15), OFFICE) \
            == local(2025, 1, 7, 8, 15)

    def test_the_weekend_is_skipped(self) -> None:
        assert calendars.deadline(local(2025, 1, 3, 17, 0), timedelta(hours=4), OFFICE) \
            == local(2025, 1, 6, 11, 0)

    def test_a_target_spanning_several_days(self) -> None:
        # 25 hours of a ten-hour day: Wed 13:00 + 5h Wed, 10h Thu, 10h Fri -> Fri 18:00.
        assert calendars.deadline(local(2025, 1, 8, 13, 0), timedelta(hours=25), OFFICE) \
            == local(2025, 1, 10, 18, 0)

    def test_holidays_are_skipped(self) -> None:
        assert calendars.deadline(local(2025, 12, 24, 17, 0), timedelta(hours=2), OFFICE) \
            == local(2025, 12, 29, 9, 0)

    def test_the_deadline_is_in_utc(self) -> None:
        due = calendars.deadline(local(2025, 1, 6, 9, 0), timedelta(hours=1), OFFICE)
        assert due.tzinfo is UTC

    def test_opens_at_is_the_next_opening(self) -> None:
        assert OFFICE.opens_at(local(2025, 1, 4, 12, 0)) == local(2025, 1, 6, 8, 0)
        assert OFFICE.opens_at(local(2025, 1, 6, 12, 0)) == local(2025, 1, 6, 12, 0)

    def test_overnight_shift_is_counted_across_midnight(self) -> None:
        assert calendars.deadline(local(2025, 1, 6, 23, 0), timedelta(hours=3), NIGHTS) \
            == local(2025, 1, 7, 2, 0)

    def test_negative_target_is_rejected(self) -> None:
        with pytest.raises(ValueError):
            calendars.deadline(local(2025, 1, 6, 9, 0), timedelta(hours=-1), OFFICE)


class TestDaylightSaving:
    def test_spring_forward_counts_real_hours(self) -> None:
        # Wall-clock arithmetic would say 12:00 summer time (10:00 UTC): an hour short.
        assert calendars.deadline(local(2025, 3, 29, 12, 0), timedelta(hours=24), ALL_DAY) \
            == datetime(2025, 3, 30, 11, 0, tzinfo=UTC)

    def test_a_window_that_loses_an_hour(self) -> None:
        # 00:00-06:00 on 30 March 2025 holds five real hours.
        assert calendars.deadline(local(2025, 3, 30, 0, 0), timedelta(hours=5), EARLY_HOURS) \
            == local(2025, 3, 30, 6, 0)

    def test_a_window_that_gains_an_hour(self) -> None:
        # 00:00-06:00 on 26 October 2025 holds seven real hours.
        assert calendars.deadline(local(2025, 10, 26, 0, 0), timedelta(hours=7), EARLY_HOURS) \
            == local(2025, 10, 26, 6, 0)

    def test_office_hours_after_the_change_use_summer_time(self) -> None:
        due = calendars.deadline(local(2025, 3, 28, 17, 0), timedelta(hours=2), OFFICE)
        assert due == datetime(2025, 3, 31, 7, 0, tzinfo=UTC)  # Monday 09:00 summer time


class TestWallClock:
    def test_no_calendar_adds_plain_time(self) -> None:
        assert calendars.deadline(local(2025, 1, 4, 12, 0), timedelta(hours=1), None) \
            == local(2025, 1, 4, 13, 0)

    def test_mode_always_ignores_the_calendar(self) -> None:
        assert calendars.deadline(local(2025, 1, 4, 12, 0), timedelta(hours=1), OFFICE,
                                  "always") == local(2025, 1, 4, 13, 0)


class TestParseCalendar:
    def test_split_days_and_holidays(self) -> None:
        calendar = parse("  time_zone: Europe/Amsterdam\n"
                         "  hours: {'mon,wed': '08:00-12:00, 13:00-17:00', sat: closed}\n"
                         "  holidays: [2025-05-05]\n")
        assert calendar.hours[0] == ((480, 720), (780, 1020))
        assert calendar.hours[1] == ()
        assert calendar.holidays == frozenset({date(2025, 5, 5)})

    @pytest.mark.parametrize(("text", "problem"), [
        ("  time_zone: Mars/Olympus\n  hours: {mon: '08:00-18:00'}\n", "IANA time zone"),
        ("  time_zone: Europe/Amsterdam\n  hours: {fri-mon: '08:00-18:00'}\n", "range"),
        ("  time_zone: Europe/Amsterdam\n  hours: {mon-fri: '08:00-18:00', mon: '09:00-10:00'}\n",
         "mon is given twice"),
        ("  time_zone: Europe/Amsterdam\n  hours: {mon: '08:00-25:00'}\n", "between 00:00"),
        ("  time_zone: Europe/Amsterdam\n  hours: {mon: '08:00-08:00'}\n", "same time"),
        ("  time_zone: Europe/Amsterdam\n  hours: {mon: 'nine to five'}\n", "not a range"),
        ("  time_zone: Europe/Amsterdam\n  hours: {mon: closed}\n", "no day of the week"),
        ("  time_zone: Europe/Amsterdam\n  hours: {mon: '08:00-18:00'}\n  days: 5\n",
         "unknown keys"),
    ])
    def test_errors_name_the_file_line_and_department(self, text: str, problem: str) -> None:
        with pytest.raises(config_files.ConfigError) as error:
            parse(text)
        assert problem in error.value.problem
        assert error.value.problem.startswith("calendar:")
        assert (error.value.path, error.value.line, error.value.entry) \
            == ("routing.yaml", 2, "customer_care")

    def test_a_holiday_that_is_no_date_is_named_at_its_own_line(self) -> None:
        with pytest.raises(config_files.ConfigError) as error:
            parse("  time_zone: Europe/Amsterdam\n  hours: {mon: '08:00-18:00'}\n"
                  "  holidays:\n    - 2025-12-25\n    - xmas\n")
        assert error.value.problem == "calendar: holiday 'xmas' is not a date like 2025-12-25"
        assert (error.value.path, error.value.line, error.value.entry) \
            == ("routing.yaml", 6, "customer_care")

    @pytest.mark.parametrize(("written", "told"), [
        ("2026-W01", "'2026-W01'"),  # an ISO week date: 2025-12-29, another year
        ("2026W527", "'2026W527'"),  # a compact week date: 2026-12-27
        ("20261225", "20261225"),  # a YAML integer: 2026-12-25 compact
        ("'2026-12-25T00:00:00'", "'2026-12-25T00:00:00'"),  # a moment, not a day
    ])
    def test_a_holiday_is_written_year_month_day(self, written: str, told: str) -> None:
        """As date.fromisoformat alone would take them, each is a day (2026-W01 one of
        another year); written otherwise than YYYY-MM-DD, each is refused at its line."""
        with pytest.raises(config_files.ConfigError) as error:
            parse("  time_zone: Europe/Amsterdam\n  hours: {mon: '08:00-18:00'}\n"
                  f"  holidays:\n    - 2025-12-25\n    - {written}\n")
        assert error.value.problem == (
            f"calendar: holiday {told} is not a date like 2025-12-25")
        assert (error.value.path, error.value.line, error.value.entry) \
            == ("routing.yaml", 6, "customer_care")


class TestBusinessTime:
    """The business time between two instants: what `deadline` adds, counted back."""

    @pytest.mark.parametrize("calendar", [OFFICE, NIGHTS, ALL_DAY, EARLY_HOURS, None])
    @pytest.mark.parametrize("target", [timedelta(minutes=5), timedelta(hours=9),
                                        timedelta(days=3, hours=2)])
    def test_is_the_inverse_of_a_deadline(self, calendar: calendars.Calendar | None,
                                          target: timedelta) -> None:
        start = local(2026, 3, 27, 17, 30)  # a Friday evening before summer time
        due = calendars.deadline(start, target, calendar)
        assert calendars.business_time(start, due, calendar) == target

    def test_counts_only_open_hours(self) -> None:
        friday_evening, monday_morning = local(2025, 3, 7, 17), local(2025, 3, 10, 9)
        assert calendars.business_time(friday_evening, monday_morning, OFFICE) \
            == timedelta(hours=2)

    def test_an_interval_that_ends_before_it_starts_is_empty(self) -> None:
        assert calendars.business_time(local(2025, 3, 10, 9), local(2025, 3, 10, 8),
                                       OFFICE) == timedelta(0)


class TestKeptWindows:
    """A calendar keeps the windows of the dates it was asked about (a routing asks
    several times): what it kept is not part of what it is."""

    def test_a_calendar_that_has_answered_equals_and_hashes_as_a_fresh_one(self) -> None:
        used = parse("  time_zone: Europe/Amsterdam\n  hours: {mon-fri: '08:00-18:00'}\n")
        calendars.deadline(local(2025, 3, 7, 17), timedelta(hours=3), used)
        fresh = parse("  time_zone: Europe/Amsterdam\n  hours: {mon-fri: '08:00-18:00'}\n")
        assert used == fresh
        assert hash(used) == hash(fresh)
        assert repr(used) == repr(fresh)

    def test_a_date_asked_again_has_the_same_windows(self) -> None:
        monday = date(2025, 3, 10)
        first = OFFICE.windows(monday)
        assert OFFICE.windows(monday) is first
        assert first == ((local(2025, 3, 10, 8).astimezone(UTC),
                          local(2025, 3, 10, 18).astimezone(UTC)),)
