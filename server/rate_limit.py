"""Failed-attempt limits: at most N failures per key in a sliding window.

Sign-in keeps two: per username and per client address (server/sessions.py).
State is in memory, per node process: a restart forgets it, which costs an
attacker a restart of a node they cannot reach. Keys are held as given; the
number of keys is bounded, the oldest forgotten first.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable

#: keys remembered at most per limiter (each holds at most ``limit`` stamps)
MAX_KEYS = 50_000


class FailureLimit:
    """At most ``limit`` failures per key within ``window_s`` seconds."""

    def __init__(self, limit: int, window_s: float, *, now_s: Callable[[], float]) -> None:
        self.limit = limit
        self.window_s = window_s
        self.now_s = now_s
        self._failures: dict[str, deque[float]] = {}

    def retry_after_s(self, key: str) -> int | None:
        """Seconds until ``key`` may try again, or None if it may now."""
        stamps = self._live(key)
        if stamps is None or len(stamps) < self.limit:
            return None
        return max(1, math.ceil(stamps[0] + self.window_s - self.now_s()))

    def record(self, key: str) -> None:
        stamps = self._live(key)
        if stamps is None:
            if len(self._failures) >= MAX_KEYS:
                self._prune()
            stamps = self._failures[key] = deque(maxlen=self.limit)
        stamps.append(self.now_s())

    def clear(self, key: str) -> None:
        self._failures.pop(key, None)

    def _live(self, key: str) -> deque[float] | None:
        stamps = self._failures.get(key)
        if stamps is None:
            return None
        horizon = self.now_s() - self.window_s
        while stamps and stamps[0] <= horizon:
            stamps.popleft()
        if not stamps:
            del self._failures[key]
            return None
        return stamps

    def _prune(self) -> None:
        horizon = self.now_s() - self.window_s
        for key in [k for k, s in self._failures.items() if not s or s[-1] <= horizon]:
            del self._failures[key]
        while len(self._failures) >= MAX_KEYS:  # all live: forget the oldest keys
            del self._failures[next(iter(self._failures))]
