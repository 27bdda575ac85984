"""Local time and working days for the work rules.

A customer's day, calling window and birthday are in the customer's time zone
(`customers.tz`, an IANA name; the node's ``[work] tz`` when absent). Working
days are Monday to Friday, less the configured holidays, plus the configured
extra working days (the weekend days the State Council's holiday schedule moves
work to). Everything here is a function of the instant and the zone passed in.
"""

from __future__ import annotations

import calendar as _stdcal
from datetime import date, datetime, timedelta, timezone
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

HOUR_MS = 3_600_000
DAY_MS = 86_400_000


@lru_cache(maxsize=256)
def zone(name: str) -> ZoneInfo:
    """The tzdata zone called ``name``; raises `ValueError` for an unknown name
    (the name is no personal information and may appear in the message)."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone `{name}`: use an IANA name such as `Asia/Shanghai`") from None


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


@lru_cache(maxsize=4096)
def _local(at_ms: int, zone: ZoneInfo) -> datetime:
    """An instant in a zone; remembered, as an inbox asks it of one instant
    (now) for every task."""
    return (_EPOCH + timedelta(milliseconds=at_ms)).astimezone(zone)


def to_ms(at: datetime) -> int:
    """Unix milliseconds of an aware datetime, rounded down (exact: no float on
    the way). From the difference's parts: dividing it by a timedelta costs
    three times as much, and an inbox page asks this of its tasks' next windows."""
    delta = at - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


class WorkCalendar(msgspec.Struct, frozen=True, kw_only=True):
    """The node's calendar: default zone, holidays and extra working days
    (ISO dates, ``2025-10-01``)."""

    tz: str = "Asia/Shanghai"
    holidays: frozenset[str] = frozenset()
    working_days: frozenset[str] = frozenset()

    def zone_of(self, tz: str | None) -> ZoneInfo:
        """``tz`` (a customer's zone), else the calendar's; an unknown customer
        zone falls back to the calendar's, so one bad row stops no rule."""
        if tz:
            try:
                return zone(tz)
            except ValueError:
                pass
        return zone(self.tz)

    def local(self, at_ms: int, tz: str | None = None) -> datetime:
        """``at_ms`` as an aware datetime in ``tz`` (or the calendar's zone)."""
        return _local(at_ms, self.zone_of(tz))

    def day_key(self, at_ms: int, tz: str | None = None) -> str:
        """The local date of ``at_ms`` in ``tz``, ``YYYY-MM-DD``."""
        return self.local(at_ms, tz).date().isoformat()

    def is_working_day(self, day: date) -> bool:
        key = day.isoformat()
        if key in self.working_days:
            return True
        return day.weekday() < 5 and key not in self.holidays

    def add_working_days(self, at_ms: int, n: int, tz: str | None = None) -> int:
        """The same local time of day ``n`` working days after ``at_ms`` (days
        counted from the next day on; ``n`` = 0 gives ``at_ms``)."""
        if n < 0:
            raise ValueError("n must be >= 0")
        start = self.local(at_ms, tz)
        day = start.date()
        left = n
        while left:
            day += timedelta(days=1)
            if self.is_working_day(day):
                left -= 1
        return self.at_local(day, start.hour, start.minute, tz, second=start.second,
                             ms=start.microsecond // 1000)

    def at_local(self, day: date, hour: int, minute: int = 0, tz: str | None = None, *, second: int = 0,
                 ms: int = 0) -> int:
        """Unix ms of a local wall time on ``day`` in ``tz`` (a time skipped by a
        DST change resolves as `zoneinfo` does, fold 0)."""
        if hour >= 24:  # the end of the day: midnight of the next
            day, hour = day + timedelta(days=1), hour - 24
        wall = datetime(day.year, day.month, day.day, hour, minute, second, ms * 1000, tzinfo=self.zone_of(tz))
        return to_ms(wall)

    def start_of_day(self, at_ms: int, tz: str | None = None) -> int:
        return self.at_local(self.local(at_ms, tz).date(), 0, 0, tz)

    def add_months(self, at_ms: int, n: int, tz: str | None = None) -> int:
        """The same local time ``n`` calendar months later (the day clamped to
        the month's length: Jan 31 + 1 month is Feb 28 or 29)."""
        start = self.local(at_ms, tz)
        return self.at_local(shift_months(start.date(), n), start.hour, start.minute, tz, second=start.second,
                             ms=start.microsecond // 1000)

    def months_between(self, from_ms: int, to_ms: int, tz: str | None = None) -> int:
        """Whole calendar months from ``from_ms`` to ``to_ms`` (0 when ``to_ms``
        is earlier): the greatest k with add_months(from, k) <= to."""
        if to_ms < from_ms:
            return 0
        a, b = self.local(from_ms, tz), self.local(to_ms, tz)
        k = (b.year - a.year) * 12 + (b.month - a.month)
        while k > 0 and self.add_months(from_ms, k, tz) > to_ms:
            k -= 1
        return k


def shift_months(day: date, n: int) -> date:
    """``day`` moved ``n`` calendar months, its day clamped to the month's length."""
    index = day.year * 12 + day.month - 1 + n
    year, month = divmod(index, 12)
    month += 1
    return date(year, month, min(day.day, _stdcal.monthrange(year, month)[1]))
