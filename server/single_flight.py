"""Concurrent calls for one key share one run of the work (`SingleFlight`).

A busy node that restarts, or a client that opens with several requests at
once, presents the same access token to many requests before the first has
checked it: without this, each would check it, every check a few trips to
the store's threads, and at saturation every trip a wait at the back of the
event loop's queue."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

_V = TypeVar("_V")


class SingleFlight(Generic[_V]):
    """Runs of async work by key: a call whose key has a run under way awaits
    that run's result (or its exception) instead of starting another."""

    def __init__(self) -> None:
        self._running: dict[Hashable, asyncio.Future[_V]] = {}

    async def run(self, key: Hashable, work: Callable[[], Awaitable[_V]]) -> _V:
        running = self._running.get(key)
        if running is None:
            running = self._running[key] = asyncio.ensure_future(work())
            running.add_done_callback(lambda done: self._finished(key, done))
        # shielded: one caller's cancellation must not cancel the others' run
        return await asyncio.shield(running)

    def _finished(self, key: Hashable, done: asyncio.Future[_V]) -> None:
        if self._running.get(key) is done:
            del self._running[key]
        if not done.cancelled():
            done.exception()  # seen: every caller that still waits gets it
