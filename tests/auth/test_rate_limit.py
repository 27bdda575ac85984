"""Failure limits: a sliding window per key, bounded in memory."""

from __future__ import annotations

from server import rate_limit
from server.rate_limit import FailureLimit


class FakeTime:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def test_limit_in_a_sliding_window() -> None:
    clock = FakeTime()
    limit = FailureLimit(3, 60, now_s=clock)
    for _ in range(3):
        assert limit.retry_after_s("ana") is None
        limit.record("ana")
        clock.now += 10
    assert limit.retry_after_s("ana") == 30  # the first failure leaves the window at 1060
    assert limit.retry_after_s("bo") is None  # per key
    clock.now += 30
    assert limit.retry_after_s("ana") is None
    limit.record("ana")
    assert limit.retry_after_s("ana") == 10


def test_clear_forgets_a_key() -> None:
    limit = FailureLimit(1, 60, now_s=FakeTime())
    limit.record("ana")
    assert limit.retry_after_s("ana") == 60
    limit.clear("ana")
    assert limit.retry_after_s("ana") is None


def test_memory_is_bounded(monkeypatch: object) -> None:
    clock = FakeTime()
    limit = FailureLimit(2, 60, now_s=clock)
    original = rate_limit.MAX_KEYS
    rate_limit.MAX_KEYS = 100
    try:
        for i in range(1_000):
            limit.record(f"user-{i}")
        assert len(limit._failures) <= 100
        assert limit.retry_after_s("user-999") is None  # one failure of two
        limit.record("user-999")
        assert limit.retry_after_s("user-999") == 60
    finally:
        rate_limit.MAX_KEYS = original
