"""An initial pull far behind the upstream builds the column indexes (blind
indexes, key-record lookups) once at its end instead of inserting into them row
by row; a small pull leaves them alone; a crash mid-pull loses nothing, since
opening the store builds any that are missing."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from sync.edits import Edit
from sync.hlc import Clock
from sync.replicator import LocalTransport, Replicator
from sync.responder import Responder
from sync.schema import COLLECTIONS
from sync.store.sqlite import SqliteStore, wall_clock_ms

#: the indexes of columns declared ``index=True``
COLUMN_INDEXES = {f"{s.name}_{c.name}" for s in COLLECTIONS.values() for c in s.columns.values() if c.index}
CUSTOMERS = 60


def _clock() -> Clock:
    return Clock(wall_clock_ms, 60_000)


def indexes(path: Path) -> set[str]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    finally:
        conn.close()


async def seeded_hq(tmp: Path) -> SqliteStore:
    hq = await SqliteStore.create(tmp / "hq.db", node_id="hq", role="hq", clock=_clock())
    await hq.enroll("branch-a", parent="hq", role="branch")
    for i in range(CUSTOMERS):
        row = f"01M84BWR79{i:016d}"
        await hq.write_local([
            Edit("customers", row, "star_level", "set", i % 8),
            Edit("customers", row, "phone_index", "set", (i * 2_654_435_761) % (1 << 32)),
        ])
    return hq


async def pull(tmp: Path, bulk_rows: int) -> tuple[list[set[str]], set[str], list[dict[str, object]]]:
    """Pull everything from a seeded HQ in pages of 10 changes; the column
    indexes present after each page, at the end, and what a lookup finds."""
    hq = await seeded_hq(tmp)
    branch = await SqliteStore.create(tmp / "b.db", node_id="branch-a", role="branch", clock=_clock())
    await branch.enroll("hq", parent=None, role="hq")
    seen: list[set[str]] = []
    try:
        replicator = Replicator(branch, LocalTransport(Responder(hq)), upstream="hq", page_limit=10, bulk_rows=bulk_rows)
        report = await replicator.sync_once(progress=lambda *_: seen.append(indexes(tmp / "b.db") & COLUMN_INDEXES))
        assert report.pulled == 2 * CUSTOMERS and report.pull_pages >= 12
        found = await branch.find_rows("customers", phone_index=(7 * 2_654_435_761) % (1 << 32))
        assert await branch.digest() == await hq.digest()
    finally:
        await branch.close()
        await hq.close()
    return seen, indexes(tmp / "b.db") & COLUMN_INDEXES, found


def test_a_pull_far_behind_builds_the_indexes_at_its_end(tmp_path: Path) -> None:
    seen, after, found = asyncio.run(pull(tmp_path, bulk_rows=20))
    assert "customers_phone_index" in COLUMN_INDEXES
    assert seen[0] == set(), "dropped from the first page on"
    assert all(s == set() for s in seen[:-1])
    assert after == COLUMN_INDEXES, "built again at the end"
    assert [r["star_level"] for r in found] == [7]


def test_a_pull_close_behind_keeps_the_indexes(tmp_path: Path) -> None:
    seen, after, found = asyncio.run(pull(tmp_path, bulk_rows=10_000))
    assert all(s == COLUMN_INDEXES for s in seen) and after == COLUMN_INDEXES
    assert [r["star_level"] for r in found] == [7]


def test_opening_a_store_builds_indexes_a_crash_left_dropped(tmp_path: Path) -> None:
    async def scenario() -> set[str]:
        store = await SqliteStore.create(tmp_path / "b.db", node_id="branch-a", role="branch", clock=_clock())
        dropped = await store.defer_indexes()
        assert set(dropped) == COLUMN_INDEXES and not indexes(tmp_path / "b.db") & COLUMN_INDEXES
        await store.close()  # no restore_indexes: as if the process died mid-pull
        store = await SqliteStore.open(tmp_path / "b.db", clock=_clock())
        await store.close()
        return indexes(tmp_path / "b.db") & COLUMN_INDEXES

    assert asyncio.run(scenario()) == COLUMN_INDEXES
