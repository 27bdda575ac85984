"""The card's history (`_latest_results`): the customer's newest results the
caller may see, newest first, found by reading growing pages of the customer's
results sorted in SQLite, not the whole history; and looked for only among the
newest `HISTORY_SCAN`, so a snapshot's reads stay bounded."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from server import work_api
from sync.edits import Edit
from sync.hlc import Clock
from sync.store.sqlite import SqliteStore

T0 = 1_800_000_000_000
C = "01JD0QK2M6X3Z1V9A8B7C6D5E4"


def _id(n: int) -> str:
    return f"01JD0QK2M6X3Z1V9A8B7C{n:05d}"


def _mine(row: dict[str, object]) -> bool:
    return row["agent"] == "me"


def test_the_newest_results_the_caller_sees_past_many_it_does_not(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def go() -> None:
        store = await SqliteStore.create(tmp_path / "hq.db", node_id="hq", role="hq", clock=Clock(lambda: T0, 60_000))
        try:
            edits = []
            for i in range(300):  # the oldest 40 are mine, the newest 260 someone else's
                edits += [Edit("results", _id(i), "customer_id", "set", C),
                          Edit("results", _id(i), "recorded_at_ms", "set", T0 + i * 1000),
                          Edit("results", _id(i), "agent", "set", "me" if i < 40 else "other")]
            await store.write_local(edits)
            latest = await store.snapshot(lambda snap: work_api._latest_results(snap, C, _mine))  # noqa: SLF001
            assert [r["row_id"] for r in latest] == [_id(i) for i in range(39, 19, -1)]  # 20, newest first

            monkeypatch.setattr(work_api, "HISTORY_SCAN", 250)  # mine are all older than the newest 250
            assert await store.snapshot(lambda snap: work_api._latest_results(snap, C, _mine)) == []  # noqa: SLF001
            monkeypatch.setattr(work_api, "HISTORY_SCAN", 261)
            assert [r["row_id"] for r in await store.snapshot(
                lambda snap: work_api._latest_results(snap, C, _mine))] == [_id(39)]  # noqa: SLF001
        finally:
            await store.close()

    asyncio.run(go())
