"""The store's reads for the work API: `find_rows` with ``fields`` and
``at_least``, and `work_queue`'s order, paging and index."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from sync.edits import Edit
from sync.hlc import Clock
from sync.store.ddl import NO_DUE, OPEN_TASKS, WORK_ORDER
from sync.store.snapshot import Snapshot, inline_reader, is_busy, read_in_transaction
from sync.store.sqlite import SqliteStore

T0 = 1_800_000_000_000
C = "01JD0QK2M6X3Z1V9A8B7C6D5E4"


def _id(n: int) -> str:
    return f"01JD0QK2M6X3Z1V9A8B7C6D{n:03d}"


async def _store(path: Path) -> SqliteStore:
    return await SqliteStore.create(path, node_id="hq", role="hq", clock=Clock(lambda: T0, 60_000))


def test_find_rows_reads_the_fields_asked_for_and_values_at_least(tmp_path: Path) -> None:
    async def go() -> None:
        store = await _store(tmp_path / "hq.db")
        try:
            await store.write_local([
                Edit("customers", C, "suppression", "add", "do_not_call"),
                Edit("customers", C, "star_level", "set", 6),
                *[Edit("results", _id(i), f, "set", v) for i in range(6)
                  for f, v in (("customer_id", C), ("recorded_at_ms", T0 + i), ("outcome", "busy"))],
                Edit("results", _id(9), "customer_id", "set", C),  # undated
            ])
            [row] = await store.find_rows("customers", fields=("suppression", "deleted"), row_id=[C])
            assert row == {"row_id": C, "suppression": ["do_not_call"], "deleted": False}
            with pytest.raises(KeyError, match="no field 'colour'"):
                await store.find_rows("customers", fields=("colour",))
            recent = await store.find_rows("results", customer_id=[C], at_least={"recorded_at_ms": T0 + 3})
            assert [r["row_id"] for r in recent] == [_id(3), _id(4), _id(5)]  # the bound is in, NULL is out
            assert len(await store.find_rows("results", customer_id=[C])) == 7
            with pytest.raises(KeyError, match="no field 'colour'"):
                await store.find_rows("results", at_least={"colour": 1})
        finally:
            await store.close()
        # a customer's recent results are a range of an index, not a read of their whole history
        with sqlite3.connect(tmp_path / "hq.db") as conn:
            statements: list[str] = []
            conn.set_trace_callback(statements.append)
            Snapshot(conn).find_rows("results", customer_id=[C], deleted=False, at_least={"recorded_at_ms": T0})
            conn.set_trace_callback(None)
            steps = [r[3] for r in conn.execute(f"EXPLAIN QUERY PLAN {statements[-1]}")]
        assert "SEARCH results USING INDEX results__customer_recorded (customer_id=? AND recorded_at_ms>?)" in steps

    asyncio.run(go())


def test_the_work_queue_pages_open_tasks_in_work_order(tmp_path: Path) -> None:
    async def go() -> None:
        store = await _store(tmp_path / "hq.db")
        try:
            plan = [  # (due, priority, status): the expected order is due (none last), then priority 9 first
                (T0 + 5, 1, "assigned"), (None, 9, "open"), (T0 + 5, 7, "in_progress"), (T0 + 1, 0, "assigned"),
                (T0 + 2, 3, "done"), (None, 2, "assigned"), (T0 + 9, 5, "archived"), (T0 + 5, 7, "assigned"),
            ]
            edits = []
            for i, (due, priority, status) in enumerate(plan):
                edits += [Edit("tasks", _id(i), "assignee", "set", "a1"), Edit("tasks", _id(i), "status", "set", status),
                          Edit("tasks", _id(i), "priority", "set", priority)]
                if due is not None:
                    edits.append(Edit("tasks", _id(i), "due_at_ms", "set", due))
            edits += [Edit("tasks", _id(20), "assignee", "set", "a2"), Edit("tasks", _id(20), "status", "set", "open")]
            edits += [Edit("tasks", _id(21), "assignee", "set", "a1"), Edit("tasks", _id(21), "status", "set", "open"),
                      Edit("tasks", _id(21), "deleted", "set", True)]
            await store.write_local(edits)
            seen, after = [], None
            while page := await store.work_queue(limit=2, after=after, assignee="a1"):
                seen += page
                last = page[-1]
                after = (last["due_at_ms"] if last["due_at_ms"] is not None else NO_DUE, last["priority"],
                         last["row_id"])
            assert [r["row_id"] for r in seen] == [_id(3), _id(2), _id(7), _id(0), _id(1), _id(5)]
            assert [r["row_id"] for r in await store.work_queue(limit=10, assignee="a1", priority_min=7)] == [
                _id(2), _id(7), _id(1)]
            assert [r["row_id"] for r in await store.work_queue(limit=10, assignee="a1", due_before=T0 + 5)] == [_id(3)]
        finally:
            await store.close()
        # the order is a walk of the open-work index, not a sort of every task of the assignee
        with sqlite3.connect(tmp_path / "hq.db") as conn:
            steps = [r[3] for r in conn.execute(
                f"EXPLAIN QUERY PLAN SELECT row_id FROM tasks WHERE assignee IS ? AND {OPEN_TASKS} "
                f"ORDER BY {WORK_ORDER} LIMIT 50", ("a1",))]
        assert steps == ["SEARCH tasks USING INDEX tasks__open_work (assignee=?)"]

    asyncio.run(go())


def test_a_store_made_before_the_index_gets_it_when_opened(tmp_path: Path) -> None:
    async def go() -> None:
        await (await _store(tmp_path / "hq.db")).close()
        with sqlite3.connect(tmp_path / "hq.db") as conn:
            conn.execute("DROP INDEX tasks__open_work")
            conn.execute("DROP INDEX results__customer_recorded")
        store = await SqliteStore.open(tmp_path / "hq.db", node_id="hq", clock=Clock(lambda: T0, 60_000))
        await store.close()
        with sqlite3.connect(tmp_path / "hq.db") as conn:
            names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert {"tasks__open_work", "results__customer_recorded"} <= names

    asyncio.run(go())


def test_a_snapshot_the_file_lock_refuses_is_read_on_the_readers_thread(tmp_path: Path) -> None:
    """A snapshot reads on the event loop's thread and never waits for a lock
    there: refused for one (here a real SQLITE_BUSY: its connection is pointed
    at a file another connection holds exclusively), it reads the same snapshot
    on the store's reader thread instead, and the answer is the store's."""
    async def go() -> None:
        store = await _store(tmp_path / "hq.db")
        locked = sqlite3.connect(tmp_path / "locked.db", isolation_level=None)
        try:
            await store.write_local([Edit("tasks", _id(1), "assignee", "set", "a1"),
                                     Edit("tasks", _id(1), "status", "set", "open")])
            locked.execute("CREATE TABLE meta (key TEXT, value TEXT)")
            store._inline = inline_reader(str(tmp_path / "locked.db"))  # noqa: SLF001 - the lock's stand-in
            locked.execute("BEGIN EXCLUSIVE")
            rows = await store.snapshot(lambda snap: (snap.high_seq(), snap.work_queue(limit=5, assignee="a1")))
            assert rows[0] >= 1 and [r["row_id"] for r in rows[1]] == [_id(1)]
            with pytest.raises(sqlite3.OperationalError) as refused:
                read_in_transaction(store._inline, lambda snap: snap.high_seq())  # noqa: SLF001
            assert is_busy(refused.value)
        finally:
            locked.close()
            await store.close()

    asyncio.run(go())


def test_newest_rows_come_newest_first_undated_last_and_page_by_offset(tmp_path: Path) -> None:
    async def go() -> None:
        store = await _store(tmp_path / "hq.db")
        try:
            times = [T0 + 5, None, T0 + 9, T0 + 1, T0 + 9, None]  # ids 0-5; ties broken by row id, descending
            await store.write_local([
                *[Edit("results", _id(i), "customer_id", "set", C) for i in range(len(times))],
                *[Edit("results", _id(i), "recorded_at_ms", "set", at) for i, at in enumerate(times) if at is not None],
                Edit("results", _id(7), "customer_id", "set", _id(99)),  # another customer's
                Edit("results", _id(8), "customer_id", "set", C), Edit("results", _id(8), "deleted", "set", True),
            ])
            expected = [_id(4), _id(2), _id(0), _id(3), _id(5), _id(1)]

            def newest(snap: Snapshot, offset: int) -> list[str]:
                return [r["row_id"] for r in snap.newest_rows("results", "recorded_at_ms", limit=4, offset=offset,
                                                              customer_id=C, deleted=False)]

            assert await store.snapshot(lambda snap: newest(snap, 0)) == expected[:4]
            assert await store.snapshot(lambda snap: newest(snap, 4)) == expected[4:]
            with pytest.raises(KeyError, match="no field 'colour'"):
                await store.snapshot(lambda snap: snap.newest_rows("results", "colour", limit=1))
        finally:
            await store.close()

    asyncio.run(go())
