"""An HQ store on a controlled clock, with its access log and retention purge.

Time starts at `T0` and moves only when a test says (`Hq.at`); the store's HLC,
the access log and the purge all read it, so "a year later" takes no waiting.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from server.audit_log import AuditLog
from server.config import RetentionConfig
from server.retention import Retention
from sync.edits import Edit
from sync.hlc import Clock
from sync.ids import new_ulid
from sync.store.sqlite import SqliteStore

T0 = 1_700_000_000_000
DAY_MS = 86_400_000
#: short periods, so the tests read as days
PERIODS = RetentionConfig(results_days=30, closed_tasks_days=10, interval_s=3_600)


class Hq:
    """An HQ store whose clock a test moves, and what the purge needs."""

    def __init__(self, store: SqliteStore, now: list[int], *, periods: RetentionConfig = PERIODS,
                 batch_rows: int = 1_000) -> None:
        self.store = store
        self.now = now
        self.audit = AuditLog(store, reveals_per_day=0, now_ms=lambda: now[0])
        self.retention = Retention(store, self.audit, periods, batch_rows=batch_rows)

    def at(self, day: float) -> None:
        """Move the clock to ``day`` days after `T0` (never backwards)."""
        assert T0 + int(day * DAY_MS) >= self.now[0]
        self.now[0] = T0 + int(day * DAY_MS)

    def new_id(self) -> str:
        return new_ulid(self.now[0], os.urandom(10))

    async def result(self, *, recorded_day: float | None, site: str = "branch-a") -> str:
        """A result recorded at ``recorded_day`` (None: no recorded time), with sealed notes."""
        row_id = self.new_id()
        values: dict[str, Any] = {"task_id": self.new_id(), "customer_id": self.new_id(), "outcome": "connected",
                                  "duration_s": 42, "site": site, "agent": "ag-1",
                                  "notes": b"\x01" + os.urandom(40)}
        if recorded_day is not None:
            values["recorded_at_ms"] = T0 + int(recorded_day * DAY_MS)
        await self.store.write_local([Edit("results", row_id, f, "set", v) for f, v in values.items()])
        return row_id

    async def task(self, status: str, *, site: str = "branch-a") -> str:
        """A task in ``status``, written now."""
        row_id = self.new_id()
        await self.store.write_local([Edit("tasks", row_id, "customer_id", "set", self.new_id()),
                                      Edit("tasks", row_id, "kind", "set", "revisit_repair"),
                                      Edit("tasks", row_id, "site", "set", site),
                                      Edit("tasks", row_id, "status", "set", status)])
        return row_id

    async def deleted(self, collection: str, row_ids: list[str], store: SqliteStore | None = None) -> list[bool]:
        rows = [await (store or self.store).read_row(collection, r) for r in row_ids]
        assert all(r is not None for r in rows), "a row is missing, not tombstoned"
        return [bool(r["deleted"]) for r in rows]  # type: ignore[index]


async def open_hq(path: Path, now: list[int], **kwargs: Any) -> Hq:
    store = await SqliteStore.create(path, node_id="hq", role="hq", clock=Clock(lambda: now[0], 60_000))
    return Hq(store, now, **kwargs)


def run(tmp_path: Path, test: Callable[[Hq], Awaitable[None]], **kwargs: Any) -> None:
    """Run ``test`` against a new HQ store at `T0`, closing it after."""

    async def go() -> None:
        hq = await open_hq(tmp_path / "hq.db", [T0], **kwargs)
        try:
            await test(hq)
        finally:
            await hq.store.close()

    asyncio.run(go())
