"""`SqliteStore.live_rows_between`: the live rows of a time range, paged by
(time, row id), with or without the index of the live rows."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from sync.edits import Edit
from sync.hlc import Clock
from sync.store.sqlite import SqliteStore

T0 = 1_800_000_000_000


@pytest.mark.parametrize("indexed", [False, True])
def test_pages_cover_the_range_once_in_time_order(tmp_path: Path, indexed: bool) -> None:
    async def go() -> None:
        store = await SqliteStore.create(tmp_path / "hq.db", node_id="hq", role="hq",
                                         clock=Clock(lambda: T0, 60_000))
        try:
            # 30 results, three per ms from T0 to T0+9, ids out of time order; two deleted; one undated
            edits = []
            for i in range(30):
                row_id = f"01JD0QK2M6X3Z1V9A8B7C6D{(29 - i):03d}"
                edits.append(Edit("results", row_id, "recorded_at_ms", "set", T0 + i // 3))
                edits.append(Edit("results", row_id, "outcome", "set", "connected"))
            edits.append(Edit("results", "01JD0QK2M6X3Z1V9A8B7C6DZZZ", "outcome", "set", "busy"))
            await store.write_local(edits)
            await store.write_local([Edit("results", "01JD0QK2M6X3Z1V9A8B7C6D020", "deleted", "set", True),
                                     Edit("results", "01JD0QK2M6X3Z1V9A8B7C6D010", "deleted", "set", True)])
            if indexed:
                await store.index_live_rows("results", "recorded_at_ms")
            since, until = T0 + 2, T0 + 8  # rows 6..23
            seen, after = [], None
            while page := await store.live_rows_between("results", "recorded_at_ms", since, until, after=after,
                                                        limit=4):
                assert len(page) <= 4
                seen += page
                after = (page[-1]["recorded_at_ms"], page[-1]["row_id"])
            keys = [(r["recorded_at_ms"], r["row_id"]) for r in seen]
            assert keys == sorted(keys) and len(set(keys)) == len(keys)
            expected = {f"01JD0QK2M6X3Z1V9A8B7C6D{(29 - i):03d}" for i in range(6, 24)} - {
                "01JD0QK2M6X3Z1V9A8B7C6D020", "01JD0QK2M6X3Z1V9A8B7C6D010"}
            assert {r["row_id"] for r in seen} == expected
            assert all(since <= r["recorded_at_ms"] < until and r["outcome"] == "connected" for r in seen)
            assert all(r["deleted"] is False for r in seen)  # a bool column still reads as a bool
            narrow = await store.live_rows_between("results", "recorded_at_ms", since, until, limit=100,
                                                   fields=("outcome",))
            assert [r["row_id"] for r in narrow] == [r["row_id"] for r in seen]
            assert {frozenset(r) for r in narrow} == {frozenset({"row_id", "outcome", "recorded_at_ms"})}
            with pytest.raises(KeyError, match="no field 'colour'"):
                await store.live_rows_between("results", "recorded_at_ms", since, until, fields=("colour",))
        finally:
            await store.close()

    asyncio.run(go())
