"""The shared reads and their row cache (`sync.store.row_cache`): a shared read
is the ordinary read of the same snapshot, whatever was written, deleted or
dropped since its rows were kept; kept rows are reused, read-only, bounded,
and never hold a sealed field."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sync.edits import Edit, InvalidEditError
from sync.hlc import Clock
from sync.store.errors import SealedProjectionError
from sync.store.row_cache import RowCache, SharedRow
from sync.store.snapshot import Snapshot, read_in_transaction
from sync.store.sqlite import SqliteStore

T0 = 1_800_000_000_000
FIELDS = ("deleted", "star_level", "tags", "tz", "assigned_agent")
AGENTS = ("a1", "a2")


def _id(prefix: str, n: int) -> str:
    return f"01JD0QK2M6X3Z1V9A8B7C6{prefix}{n:03d}"


def _task(n: int, *, assignee: str, status: str, due: int | None, priority: int) -> list[Edit]:
    values: dict[str, Any] = {"customer_id": _id("C", n % 4), "kind": "care", "assignee": assignee, "status": status,
                              "priority": priority, "due_at_ms": due}
    return [Edit("tasks", _id("T", n), f, "set", v) for f, v in values.items()]


# one step of a history: a task written, a customer written, a row deleted (tombstone), a row
# dropped (purged: its table row deleted, as `SqliteStore._drop_rows` does), or a read compared
_tasks = st.builds(lambda n, a, s, d, p: ("task", n, a, s, d, p), st.integers(0, 7), st.sampled_from(AGENTS),
                   st.sampled_from(("open", "assigned", "in_progress", "done")),
                   st.none() | st.integers(T0, T0 + 10), st.integers(0, 9))
_customers = st.builds(lambda n, star, tag: ("customer", n, star, tag), st.integers(0, 3), st.integers(0, 7),
                       st.sampled_from(("vip", "new", "late")))
_deletes = st.builds(lambda c, n: ("delete", c, n), st.sampled_from(("tasks", "customers")), st.integers(0, 7))
_drops = st.builds(lambda c, n: ("drop", c, n), st.sampled_from(("tasks", "customers")), st.integers(0, 7))
_reads = st.just(("read",))
_steps = st.lists(st.one_of(_tasks, _customers, _deletes, _drops, _reads, _reads), min_size=1, max_size=30)


def _compare(snap: Snapshot) -> int:
    """Every shared read of ``snap`` against its ordinary read; the rows read."""
    read = 0
    for agent in AGENTS:
        for after in (None, (T0 + 3, 5, _id("T", 3))):
            shared = snap.shared_work_queue(limit=3, after=after, assignee=agent)
            assert [dict(r) for r in shared] == snap.work_queue(limit=3, after=after, assignee=agent)
            assert all(type(r) is SharedRow for r in shared)
            read += len(shared)
    ids = [_id("C", n) for n in range(4)] + ["01JD0QK2M6X3Z1V9A8B7C6NONE"]
    shared = snap.shared_rows("customers", ids, FIELDS)
    assert [dict(r) for r in shared] == snap.find_rows("customers", fields=FIELDS, row_id=ids)
    return read + len(shared)


@pytest.mark.parametrize("max_rows", [2, 1_000])
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=_steps)
def test_a_shared_read_is_the_ordinary_read_whatever_happened_since(max_rows: int, steps: list[tuple[Any, ...]]) -> None:
    """Against a real store file: rows kept by the shared reads are never served
    once written, deleted or dropped, with a roomy cache and with one that
    must let rows go (2 a projection)."""

    async def go(path: Path) -> None:
        store = await SqliteStore.create(path, node_id="hq", role="hq", clock=Clock(lambda: T0, 60_000))
        cache = RowCache(max_rows)
        outside = sqlite3.connect(path, isolation_level=None)  # the drops' DELETE, as the store's own
        try:
            for step in [*steps, ("read",), ("read",)]:
                kind = step[0]
                if kind == "task":
                    _, n, agent, status, due, priority = step
                    with contextlib.suppress(InvalidEditError):  # a status moved back: refused whole
                        await store.write_local(_task(n, assignee=agent, status=status, due=due, priority=priority))
                elif kind == "customer":
                    _, n, star, tag = step
                    await store.write_local([Edit("customers", _id("C", n), "star_level", "set", star),
                                             Edit("customers", _id("C", n), "tags", "add", tag)])
                elif kind == "delete":
                    _, collection, n = step
                    await store.write_local([Edit(collection, _id(collection[0].upper(), n), "deleted", "set", True)])
                elif kind == "drop":
                    _, collection, n = step
                    outside.execute(f"DELETE FROM {collection} WHERE row_id = ?", (_id(collection[0].upper(), n),))
                else:
                    with sqlite3.connect(path, isolation_level=None) as conn:
                        read_in_transaction(conn, _compare, cache)
            assert all(len(kept) <= max_rows for kept in cache._kept.values())  # noqa: SLF001
        finally:
            outside.close()
            await store.close()

    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(go(Path(tmp) / "hq.db"))


def _seeded(path: Path, tasks: int) -> None:
    async def go() -> None:
        store = await SqliteStore.create(path, node_id="hq", role="hq", clock=Clock(lambda: T0, 60_000))
        try:
            await store.write_local([e for n in range(tasks)
                                     for e in _task(n, assignee="a1", status="open", due=T0 + n, priority=5)])
        finally:
            await store.close()

    asyncio.run(go())


def _queue(conn: sqlite3.Connection, cache: RowCache) -> list[Any]:
    return read_in_transaction(conn, lambda snap: snap.shared_work_queue(limit=6, assignee="a1"), cache)


def _selects(conn: sqlite3.Connection, read: Any) -> tuple[Any, list[str]]:
    """What ``read()`` returns, and the SELECT statements it ran on ``conn``."""
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    try:
        return read(), [s for s in statements if s.startswith("SELECT")]
    finally:
        conn.set_trace_callback(None)


def test_kept_rows_are_reused_until_written_and_read_by_version_once_most_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "hq.db"
    _seeded(path, 6)
    cache = RowCache(100)
    with sqlite3.connect(path, isolation_level=None) as conn:
        first, selects = _selects(conn, lambda: _queue(conn, cache))
        # nothing kept yet: the rows read whole at once, as an ordinary read does
        assert len(first) == 6 and len(selects) == 1 and selects[0].startswith("SELECT _seq, row_id,"), selects
        for _ in range(4):  # each found kept: the share found kept climbs past a half
            assert all(a is b for a, b in zip(_queue(conn, cache), first, strict=True))
        assert cache.expects_hits("tasks", tuple(first[0]))

        async def write() -> None:
            store = await SqliteStore.open(path, node_id="hq", clock=Clock(lambda: T0, 60_000))
            try:
                await store.write_local(_task(2, assignee="a1", status="open", due=T0 + 2, priority=9))
            finally:
                await store.close()

        asyncio.run(write())
        after, selects = _selects(conn, lambda: _queue(conn, cache))
    # most were kept: their versions first, then only the one written since, by id
    assert selects[0].startswith("SELECT row_id, _seq FROM tasks") and "json_each" in selects[1], selects
    assert [r["row_id"] for r in after] == [r["row_id"] for r in first]  # due first: the same order
    assert after[2]["row_id"] == _id("T", 2) and after[2]["priority"] == 9 and first[2]["priority"] == 5
    assert all(a is b for n, (a, b) in enumerate(zip(after, first, strict=True)) if n != 2)


def test_a_kept_row_cannot_be_changed_in_place() -> None:
    row = RowCache(4).keep("tasks", ("row_id", "priority"), [(7, {"row_id": "t1", "priority": 3})])["t1"]
    for change in (lambda: row.__setitem__("priority", 9), lambda: row.pop("priority"), lambda: row.update(x=1),
                   lambda: row.setdefault("x", 1), lambda: row.popitem(), lambda: row.clear(),
                   lambda: row.__delitem__("priority"), lambda: row.__ior__({"x": 1})):
        with pytest.raises(TypeError, match="read-only"):
            change()
    assert row == {"row_id": "t1", "priority": 3}
    assert dict(row) | {"priority": 9} == {"row_id": "t1", "priority": 9}  # a copy is the reader's own


def test_each_projection_keeps_at_most_max_rows_the_longest_kept_going_first() -> None:
    cache = RowCache(2)
    names = ("row_id", "priority")
    for n in range(3):
        cache.keep("tasks", names, [(n, {"row_id": f"t{n}", "priority": n})])
    cache.keep("tasks", ("row_id",), [(9, {"row_id": "t0"})])  # another projection: its own room
    assert len(cache) == 3
    assert cache.find("tasks", names, [("t0", 0), ("t1", 1), ("t2", 2)]) == [None, {"row_id": "t1", "priority": 1},
                                                                            {"row_id": "t2", "priority": 2}]
    assert cache.find("tasks", names, [("t1", 2)]) == [None]  # kept as of another write
    with pytest.raises(ValueError, match="at least 1"):
        RowCache(0)


def test_a_shared_read_never_keeps_a_sealed_field(tmp_path: Path) -> None:
    _seeded(tmp_path / "hq.db", 1)
    cache = RowCache(10)
    with sqlite3.connect(tmp_path / "hq.db", isolation_level=None) as conn:
        for fields in (("star_level", "phone_index"), ("name",), ("tz", "contact_key")):
            with pytest.raises(SealedProjectionError) as refused:
                read_in_transaction(conn, lambda snap: snap.shared_rows("customers", [_id("C", 0)], fields), cache)
            assert refused.value.collection == "customers" and "ordinary read" in str(refused.value)
    assert len(cache) == 0
