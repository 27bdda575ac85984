"""The work calendar's instant arithmetic, against the plain definitions.

`to_ms` takes a datetime's milliseconds from the parts of its difference to the
epoch, and `window_open_at` / `next_day_window` reach "tomorrow" as the next
local calendar date: both were written for speed (an inbox asks them of every
task), so each is checked here against the slower, obvious form, in zones with
and without daylight saving, across DST changes and before 1970.
"""

from __future__ import annotations

from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from server.work.calendar import _EPOCH, DAY_MS, WorkCalendar, to_ms, zone
from server.work.offer import in_window, next_day_window, window_open_at

#: no DST; a half-hour and a quarter-hour offset; DST in both hemispheres; a 30-minute DST shift
ZONES = ("Asia/Shanghai", "UTC", "Asia/Kolkata", "Asia/Kathmandu", "America/New_York", "Europe/London",
         "Australia/Sydney", "Australia/Lord_Howe")
CAL = WorkCalendar()
#: 1960 to 2100, in ms
INSTANTS = st.integers(min_value=-315_619_200_000, max_value=4_102_444_800_000)
WINDOWS = st.tuples(st.integers(0, 1439), st.integers(0, 1439))
TZS = st.sampled_from((None, *ZONES))


def _tomorrow_by_start_of_day(at_ms: int, window: tuple[int, int], tz: str | None) -> int:
    """The window's opening on the next local day, found as the calendar did
    before: local midnight plus 25 hours (a local day lasts 23 to 25 hours)."""
    tomorrow = CAL.local(CAL.start_of_day(at_ms, tz) + DAY_MS + 3_600_000, tz).date()
    return CAL.at_local(tomorrow, window[0] // 60, window[0] % 60, tz)


def _open_at_by_start_of_day(at_ms: int, window: tuple[int, int], tz: str | None) -> int:
    if in_window(at_ms, window, tz, CAL):
        return at_ms
    start = window[0]
    today = CAL.at_local(CAL.local(at_ms, tz).date(), start // 60, start % 60, tz)
    return today if today > at_ms else _tomorrow_by_start_of_day(at_ms, window, tz)


@settings(max_examples=500, deadline=None)
@given(us=st.integers(min_value=-(10**16), max_value=10**16), tz=st.sampled_from(ZONES))
def test_to_ms_is_the_floor_of_the_difference_in_milliseconds(us: int, tz: str) -> None:
    at = (_EPOCH + timedelta(microseconds=us)).astimezone(zone(tz))
    assert to_ms(at) == (at - _EPOCH) // timedelta(milliseconds=1) == us // 1000


@settings(max_examples=500, deadline=None)
@given(at_ms=INSTANTS, window=WINDOWS, tz=TZS)
def test_the_next_window_opening_is_the_one_midnight_plus_25_hours_finds(
    at_ms: int, window: tuple[int, int], tz: str | None
) -> None:
    assert window_open_at(at_ms, window, tz, CAL) == _open_at_by_start_of_day(at_ms, window, tz)
    assert next_day_window(at_ms, window, tz, CAL) == _tomorrow_by_start_of_day(at_ms, window, tz)


@settings(max_examples=200, deadline=None)
@given(at_ms=INSTANTS, window=WINDOWS, tz=st.sampled_from((None, "Asia/Shanghai", "UTC", "Asia/Kolkata")))
def test_the_opening_is_the_first_minute_inside_the_window(at_ms: int, window: tuple[int, int],
                                                           tz: str | None) -> None:
    """Where no DST change can put the window's start in a gap: no minute between
    ``at_ms`` and the answer is inside the window, and the answer is."""
    opened = window_open_at(at_ms, window, tz, CAL)
    assert opened >= at_ms and in_window(opened, window, tz, CAL)
    minute = -(-at_ms // 60_000) * 60_000  # the first whole minute at or after at_ms
    if opened > at_ms:
        assert not in_window(at_ms, window, tz, CAL)
        assert all(not in_window(t, window, tz, CAL) for t in range(minute, opened, 60_000))
