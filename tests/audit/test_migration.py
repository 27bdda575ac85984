"""Layout 7: a store of layout 6 keeps its access events, as the first entries
of its audit chain, in their order; the chain they make is whole."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from server.audit_verify import verify_chain
from sync.audit import AuditDraft
from sync.hlc import Clock
from sync.store.ddl import ACCESS_TABLES
from sync.store.migrations import LAYOUT_VERSION
from sync.store.sqlite import SqliteStore, wall_clock_ms


def test_access_events_become_the_first_entries_of_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "old.db"

    async def make() -> None:
        store = await SqliteStore.create(path, node_id="branch-a", role="branch", clock=Clock(wall_clock_ms, 60_000))
        await store.close()

    asyncio.run(make())
    db = sqlite3.connect(path)  # as a layout-6 store left it: access events, no audit tables
    for table in ("audit_entries", "audit_rows", "audit_anchors", "audit_checkpoints", "audit_verified",
                  "audit_alerts"):
        db.execute(f"DROP TABLE {table}")
    for statement in ACCESS_TABLES:
        db.execute(statement)
    db.executemany(
        "INSERT INTO access_events (at_ms, actor, role, action, collection, row_id, fields, masked, purpose, "
        "reference, outcome, status, reason) VALUES (?, ?, ?, ?, 'customers', ?, ?, ?, ?, NULL, ?, ?, ?)",
        [(1_000, "u1", "agent", "read", "R1", "name,phone", "id_number", None, "ok", 200, None),
         (2_000, "u1", "agent", "reveal", "R1", "phone", "", "inbound_call", "ok", 200, None),
         (3_000, "anonymous", None, "read", "R2", "", "", None, "refused", 401, "expired")],
    )
    db.execute("PRAGMA user_version = 6")
    db.commit()
    db.close()

    async def reopen() -> tuple[list[object], bool]:
        store = await SqliteStore.open(path, clock=Clock(wall_clock_ms, 60_000))
        try:
            await store.append_audit(AuditDraft(at_ms=4_000, actor="u2", action="read"))
            chain = await store.audit_chain("branch-a")
            return chain, (await verify_chain(store, "branch-a")).ok
        finally:
            await store.close()

    chain, whole = asyncio.run(reopen())
    assert whole
    assert [(e.seq, e.actor, e.action, e.rows, e.shown, e.fields, e.masked) for e in chain[:3]] == [  # type: ignore[attr-defined]
        (1, "u1", "read", ("R1",), ("name", "phone"), (), ("id_number",)),
        (2, "u1", "reveal", ("R1",), (), ("phone",), ()),
        (3, "anonymous", "read", ("R2",), (), (), ()),
    ]
    assert chain[3].seq == 4  # type: ignore[attr-defined]
    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA user_version").fetchone() == (LAYOUT_VERSION,) == (7,)
        assert db.execute("SELECT count(*) FROM sqlite_master WHERE name = 'access_events'").fetchone() == (0,)
    finally:
        db.close()

