"""Working days, months and local days on a controlled clock."""

from __future__ import annotations

from datetime import date

from hypothesis import given
from hypothesis import strategies as st

from server.work.calendar import WorkCalendar, shift_months
from tests.work.clock import CAL, DAY, HOUR, at


def test_three_working_days_skip_the_weekend() -> None:
    friday = at(2025, 3, 7, 15)
    assert CAL.add_working_days(friday, 3) == at(2025, 3, 12, 15)  # Mon, Tue, Wed


def test_holidays_are_skipped_and_extra_working_days_count() -> None:
    # Fri 26 Sep 2025: Sun 28 Sep is a working day; 1-3 Oct are holidays
    assert CAL.add_working_days(at(2025, 9, 26, 10), 1) == at(2025, 9, 28, 10)
    assert CAL.add_working_days(at(2025, 9, 29, 10), 2) == at(2025, 10, 6, 10)  # Tue 30, (1-3 off, 4-5 weekend) Mon 6
    plain = WorkCalendar()
    assert plain.add_working_days(at(2025, 9, 29, 10), 2) == at(2025, 10, 1, 10)


def test_day_key_is_the_customers_local_day() -> None:
    instant = at(2025, 3, 7, 23, 30)  # Shanghai, 15:30 UTC
    assert CAL.day_key(instant) == "2025-03-07"
    assert CAL.day_key(instant, "Europe/London") == "2025-03-07"
    assert CAL.day_key(instant + HOUR, "Asia/Tokyo") == "2025-03-08"
    assert CAL.local(instant, "No/Such_Zone").utcoffset().total_seconds() == 8 * 3600  # falls back


def test_months_clamp_to_the_month_end() -> None:
    assert CAL.add_months(at(2025, 1, 31, 9), 1) == at(2025, 2, 28, 9)
    assert CAL.add_months(at(2024, 1, 31, 9), 1) == at(2024, 2, 29, 9)
    assert CAL.months_between(at(2025, 1, 31, 9), at(2025, 2, 28, 9)) == 1
    assert CAL.months_between(at(2025, 1, 31, 9), at(2025, 2, 28, 8)) == 0


@given(st.dates(min_value=date(2000, 1, 1), max_value=date(2090, 1, 1)), st.integers(0, 240))
def test_months_between_inverts_add_months(day: date, n: int) -> None:
    start = CAL.at_local(day, 10)
    assert CAL.months_between(start, CAL.add_months(start, n)) == n
    assert shift_months(day, n).day <= day.day


@given(st.integers(0, 2_000_000_000_000 // DAY).map(lambda d: d * DAY + 7 * HOUR), st.integers(0, 30))
def test_add_working_days_lands_on_a_working_day_n_of_them_on(start: int, n: int) -> None:
    end = CAL.add_working_days(start, n)
    assert end >= start
    a, b = CAL.local(start).date(), CAL.local(end).date()
    between = [date.fromordinal(o) for o in range(a.toordinal() + 1, b.toordinal() + 1)]
    assert sum(CAL.is_working_day(d) for d in between) == n
    if n:
        assert CAL.is_working_day(b)
