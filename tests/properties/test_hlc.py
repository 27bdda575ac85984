"""Hybrid logical clock: monotonic whatever the wall clock does, bounded drift, packing."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sync.errors import ClockDriftError
from sync.hlc import COUNTER_MASK, Clock, Hlc, pack, wall_ms_of

WALL_MAX = (1 << 48) - 1
walls = st.integers(0, 10_000_000)
#: ("send", wall) or ("observe", wall, ms ahead of wall, counter)
steps = st.one_of(
    st.tuples(st.just("send"), walls),
    st.tuples(st.just("observe"), walls, st.integers(-5_000, 5_000), st.integers(0, COUNTER_MASK)),
)


@given(steps=st.lists(steps, min_size=1, max_size=60), max_drift_ms=st.integers(0, 2_000), last=st.integers(0, pack(10_000_000)))
def test_send_is_strictly_increasing_and_above_everything_observed(
    steps: list[tuple], max_drift_ms: int, last: int
) -> None:
    """Every stamp sent is greater than every stamp sent or accepted before, even
    when the wall clock jumps backwards and the counter overflows."""
    now = [0]
    clock = Clock(lambda: now[0], max_drift_ms, last=last)
    high = last
    for step in steps:
        now[0] = step[1]
        if step[0] == "send":
            stamp = clock.send()
            assert stamp > high
            assert wall_ms_of(stamp) >= now[0]
            high = stamp
        else:
            stamp = pack(max(0, step[1] + step[2]), step[3])
            try:
                clock.observe(stamp)
            except ClockDriftError:
                assert wall_ms_of(stamp) - now[0] > max_drift_ms
            else:
                assert wall_ms_of(stamp) - now[0] <= max_drift_ms
                high = max(high, stamp)
        assert clock.last == high


@given(now=walls, max_drift_ms=st.integers(0, 10_000), ahead=st.integers(1, 10_000), counter=st.integers(0, COUNTER_MASK))
def test_drift_beyond_the_bound_is_refused_and_not_observed(now: int, max_drift_ms: int, ahead: int, counter: int) -> None:
    clock = Clock(lambda: now, max_drift_ms)
    before = clock.send()
    stamp = pack(now + max_drift_ms + ahead, counter)
    for call in (clock.check, clock.observe):
        with pytest.raises(ClockDriftError) as info:
            call(stamp, "$.changes[3].hlc")
        err = info.value
        assert (err.stamp_ms, err.now_ms, err.max_drift_ms, err.where) == (wall_ms_of(stamp), now, max_drift_ms, "$.changes[3].hlc")
        assert err.details()["retry_after_ms"] == ahead
    assert clock.last == before  # a refused stamp leaves the clock alone
    edge = pack(now + max_drift_ms, counter)
    clock.observe(edge)  # exactly at the bound is accepted
    assert clock.send() > edge


@given(wall=st.integers(0, WALL_MAX), counter=st.integers(0, COUNTER_MASK))
def test_pack_round_trips(wall: int, counter: int) -> None:
    stamp = pack(wall, counter)
    assert wall_ms_of(stamp) == wall
    assert Hlc.unpack(stamp) == Hlc(wall, counter)
    assert Hlc(wall, counter).packed == stamp
    assert 0 <= stamp < 1 << 64


@given(a=st.tuples(st.integers(0, WALL_MAX), st.integers(0, COUNTER_MASK)), b=st.tuples(st.integers(0, WALL_MAX), st.integers(0, COUNTER_MASK)))
def test_packed_order_is_readable_order(a: tuple[int, int], b: tuple[int, int]) -> None:
    """Stamps compare as integers exactly as (wall_ms, counter) pairs do."""
    assert (pack(*a) < pack(*b)) == (a < b) == (Hlc(*a) < Hlc(*b))
