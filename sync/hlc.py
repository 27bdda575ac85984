"""Hybrid logical clock.

A stamp packs wall-clock milliseconds (48 bits, good until the year 10889) and a
logical counter (16 bits) into one integer, so stamps compare, sort and index as
plain integers in SQLite and on the wire. `Hlc` is the readable form.

The clock never goes backwards: every stamp it issues is greater than every stamp
it issued or observed before, whatever the wall clock does. It refuses to observe
a stamp further than ``max_drift_ms`` ahead of its wall clock, so one node with a
runaway clock cannot drag every other node's clock (and every later write) into
the future.

Time is injected: ``Clock(now_ms=...)``; the core reads no clock of its own.
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from sync.errors import ClockDriftError

COUNTER_BITS = 16
COUNTER_MASK = (1 << COUNTER_BITS) - 1


class Hlc(msgspec.Struct, frozen=True, order=True):
    """A stamp in readable form; ``Hlc.unpack(stamp).packed == stamp``."""

    wall_ms: int
    counter: int

    @property
    def packed(self) -> int:
        return (self.wall_ms << COUNTER_BITS) | self.counter

    @classmethod
    def unpack(cls, stamp: int) -> Hlc:
        return cls(stamp >> COUNTER_BITS, stamp & COUNTER_MASK)

    def __str__(self) -> str:
        return f"{self.wall_ms}.{self.counter}"


def wall_ms_of(stamp: int) -> int:
    """The wall-clock part of a packed stamp, in milliseconds."""
    return stamp >> COUNTER_BITS


def pack(wall_ms: int, counter: int = 0) -> int:
    return (wall_ms << COUNTER_BITS) | counter


class Clock:
    """A hybrid logical clock over an injected wall clock.

    >>> now = [1_000]
    >>> clock = Clock(now_ms=lambda: now[0], max_drift_ms=500)
    >>> a = clock.send(); b = clock.send()
    >>> Hlc.unpack(a), Hlc.unpack(b)
    (Hlc(wall_ms=1000, counter=0), Hlc(wall_ms=1000, counter=1))
    >>> clock.observe(pack(1_400, 7)); Hlc.unpack(clock.send())
    Hlc(wall_ms=1400, counter=8)
    >>> clock.observe(pack(9_999))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    sync.errors.ClockDriftError: Change stamped 8999 ms in the future, ...
    """

    def __init__(self, now_ms: Callable[[], int], max_drift_ms: int, last: int = 0) -> None:
        if max_drift_ms < 0:
            raise ValueError("max_drift_ms must be >= 0")
        self._now_ms = now_ms
        self.max_drift_ms = max_drift_ms
        self.last = last

    def now_ms(self) -> int:
        return self._now_ms()

    def send(self) -> int:
        """Issue a new stamp, greater than every stamp issued or observed so far."""
        wall = self._now_ms()
        last_wall = self.last >> COUNTER_BITS
        if wall > last_wall:
            stamp = wall << COUNTER_BITS
        else:
            stamp = self.last + 1  # counter overflow carries into the wall part
        self.last = stamp
        return stamp

    def check(self, stamp: int, where: str = "$") -> None:
        """Raise `ClockDriftError` if ``stamp`` is further ahead than ``max_drift_ms``."""
        wall = stamp >> COUNTER_BITS
        now = self._now_ms()
        if wall - now > self.max_drift_ms:
            raise ClockDriftError(where, wall, now, self.max_drift_ms)

    def observe(self, stamp: int, where: str = "$") -> None:
        """Take a received stamp into account, refusing it if it drifts too far ahead."""
        self.check(stamp, where)
        if stamp > self.last:
            self.last = stamp
