"""Layout 3 folds key records written by schema 2 (one merge state per attribute)
into schema 3's two fields, keeping every stamp: the store reads them as before."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import msgspec

from sync.edits import Edit
from sync.hlc import Clock
from sync.schema import KeyRef, KeyWrap
from sync.store.sqlite import SqliteStore, wall_clock_ms

CUSTOMER = "01M84BWR7988KNGNA89NRASASR"
RECORDS = {
    "7f5c4f1e-3b1a-5c2e-9d4b-2a6f0e8c1d3a": (
        KeyRef(kind="data_key", scope_group="branch-a", field_class="contact", customer_id=CUSTOMER, key_version=1),
        KeyWrap(scope_version=2, wrapped=b"\x01" + bytes(range(40))),
    ),
    "0c2d4e6f-8a1b-5c3d-9e5f-7a9b1c3d5e7f": (
        KeyRef(kind="epoch", scope_group="branch-a", field_class="contact"),
        KeyWrap(scope_version=2),
    ),
}


def _clock() -> Clock:
    return Clock(wall_clock_ms, 60_000)


def _as_schema_2(doc: dict[str, list]) -> dict[str, list]:
    """A schema-3 key record's merge state as schema 2 kept it: one entry per
    attribute that had a value, each with the stamp of its write."""
    out = {name: entry for name, entry in doc.items() if name not in ("ref", "wrap")}
    for field, cls in (("ref", KeyRef), ("wrap", KeyWrap)):
        raw, hlc, origin, seq, src = doc[field]
        value = msgspec.msgpack.decode(raw, type=cls)
        for member in cls.__struct_fields__:
            if getattr(value, member) is not None:
                out[member] = [msgspec.msgpack.encode(getattr(value, member)), hlc, origin, seq, src]
    return out


def test_layout_3_folds_old_key_records_back_to_what_schema_3_writes(tmp_path: Path) -> None:
    path = tmp_path / "node.db"

    async def write() -> list[dict]:
        store = await SqliteStore.create(path, node_id="branch-a", role="branch", clock=_clock())
        try:
            await store.write_local([
                Edit("keys", row, field, value=value)
                for row, (ref, wrap) in RECORDS.items() for field, value in (("ref", ref), ("wrap", wrap))
            ])
            return await store.find_rows("keys")
        finally:
            await store.close()

    before = asyncio.run(write())
    db = sqlite3.connect(path)
    states = dict(db.execute("SELECT row_id, _state FROM keys"))
    for row_id, state in states.items():
        old = _as_schema_2(msgspec.msgpack.decode(state))
        assert "ref" not in old and "kind" in old
        db.execute("UPDATE keys SET _state = ? WHERE row_id = ?", (msgspec.msgpack.encode(old), row_id))
    for table in ("auth_sessions", "auth_refresh_tokens", "auth_devices", "peer_rows", "peer_drops"):  # layout 4's, 5's
        db.execute(f"DROP TABLE {table}")
    for table, column in (("links", "pull_scope"), ("nodes", "offboarding_ms"), ("nodes", "retired_ms")):  # layout 5's
        db.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
    db.execute("PRAGMA user_version = 2")
    db.commit()
    db.close()

    async def reopen() -> tuple[list[dict], str]:
        store = await SqliteStore.open(path, clock=_clock())
        try:
            return await store.find_rows("keys"), await store.digest(["keys"])
        finally:
            await store.close()

    after, digest = asyncio.run(reopen())
    assert after == before
    db = sqlite3.connect(path)
    try:
        folded = dict(db.execute("SELECT row_id, _state FROM keys"))
    finally:
        db.close()
    assert folded == states  # byte for byte what schema 3 wrote: same values, stamps and numbers
    assert len(digest) == 64
