"""The store's access events: appended in order, never changed, counted for limits,
and added to an older store by layout 5."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from sync.hlc import Clock
from sync.store import AccessEvent
from sync.store.migrations import LAYOUT_VERSION
from sync.store.sqlite import SqliteStore, wall_clock_ms


def _clock() -> Clock:
    return Clock(wall_clock_ms, 60_000)


def event(actor: str = "u1", action: str = "reveal", at_ms: int = 1_000, **extra: object) -> AccessEvent:
    values: dict[str, object] = {"collection": "customers", "outcome": "ok", "status": 200, **extra}
    return AccessEvent(at_ms=at_ms, actor=actor, action=action, **values)  # type: ignore[arg-type]


def test_events_read_back_in_order_with_their_names_and_codes(tmp_path: Path) -> None:
    async def go() -> list[AccessEvent]:
        store = await SqliteStore.create(tmp_path / "n.db", node_id="hq", role="hq", clock=_clock())
        try:
            first = await store.add_access_event(event(row_id="R1", fields=("phone",), masked=("name", "id_number"),
                                                       purpose="outbound_call", reference="T1", role="agent"))
            second = await store.add_access_event(event(actor="anonymous", action="read", outcome="refused",
                                                         status=401, reason="expired"))
            assert second > first
            assert [e.event_id for e in await store.access_events(actor="u1")] == [first]
            assert await store.access_events(row_id="R1", action="read") == []
            return await store.access_events()
        finally:
            await store.close()

    one, two = asyncio.run(go())
    assert one.fields == ("phone",) and one.masked == ("name", "id_number") and one.purpose == "outbound_call"
    assert one.reference == "T1" and one.role == "agent" and one.row_id == "R1"
    assert (two.actor, two.outcome, two.status, two.reason, two.fields) == ("anonymous", "refused", 401, "expired", ())


def test_the_table_refuses_updates_and_deletes(tmp_path: Path) -> None:
    async def go() -> None:
        store = await SqliteStore.create(tmp_path / "n.db", node_id="hq", role="hq", clock=_clock())
        try:
            await store.add_access_event(event())
        finally:
            await store.close()

    asyncio.run(go())
    db = sqlite3.connect(tmp_path / "n.db")
    try:
        for statement in ("UPDATE access_events SET actor = 'x'", "DELETE FROM access_events"):
            with pytest.raises(sqlite3.IntegrityError, match="append-only"):
                db.execute(statement)
        assert db.execute("SELECT count(*) FROM access_events").fetchone() == (1,)
    finally:
        db.close()


def test_a_limited_append_counts_and_appends_in_one_step(tmp_path: Path) -> None:
    async def go() -> tuple[list[tuple[int | None, int, int | None]], int, int]:
        store = await SqliteStore.create(tmp_path / "n.db", node_id="hq", role="hq", clock=_clock())
        try:
            await store.add_access_event(event(at_ms=10))  # before the window: not counted
            await store.add_access_event(event(at_ms=150, outcome="refused", status=403))  # refused: not counted
            await store.add_access_event(event(actor="u2", at_ms=150))  # another user
            outcomes = await asyncio.gather(
                *(store.add_access_event_within(event(at_ms=200 + i), limit=3, since_ms=100) for i in range(8))
            )
            counted = await store.count_access_events(actor="u1", action="reveal", since_ms=100)
            return outcomes, counted, len(await store.access_events(actor="u1"))
        finally:
            await store.close()

    outcomes, counted, stored = asyncio.run(go())
    taken = [o for o in outcomes if o[0] is not None]
    assert len(taken) == 3 and counted == 3 and stored == 2 + 3
    assert all(o[1] == 3 and o[2] == 200 for o in outcomes if o[0] is None)


def test_layout_6_adds_the_table_to_an_older_store(tmp_path: Path) -> None:
    path = tmp_path / "old.db"

    async def make() -> None:
        store = await SqliteStore.create(path, node_id="branch-a", role="branch", clock=_clock())
        await store.close()

    asyncio.run(make())
    db = sqlite3.connect(path)  # as a layout-5 store left it
    for statement in ("DROP TABLE access_events", "PRAGMA user_version = 5"):
        db.execute(statement)
    db.commit()
    db.close()

    async def reopen() -> list[AccessEvent]:
        store = await SqliteStore.open(path, clock=_clock())
        try:
            await store.add_access_event(event())
            return await store.access_events()
        finally:
            await store.close()

    assert len(asyncio.run(reopen())) == 1
    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA user_version").fetchone() == (LAYOUT_VERSION,)
        names = {r[0] for r in db.execute("SELECT name FROM sqlite_master")}
    finally:
        db.close()
    assert {"access_events", "access_events_no_update", "access_events_no_delete"} <= names
