"""Store layout migrations, in the style of sqlite-utils' registry.

``PRAGMA user_version`` holds the layout version. Each migration runs once, in
order, inside the transaction that bumps the version. Fields added to the schema
later (appended, with defaults) need no hand-written step: `add_missing_columns`
adds their columns and any new collection's table on every open.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import aiosqlite
import msgspec

from sync.audit import AuditDraft, chain_entry, genesis
from sync.schema import COLLECTIONS, KeyRef, KeyWrap
from sync.store import audit_rows
from sync.store.ddl import (
    ACCESS_TABLES,
    AUDIT_TABLES,
    AUTH_TABLES,
    SCOPE_TABLES,
    _sql_literal,
    collection_table,
    column_index,
    schema_ddl,
)

Step = Callable[[aiosqlite.Connection], Awaitable[None]]
MIGRATIONS: list[tuple[int, str, Step]] = []


def migration(version: int, description: str) -> Callable[[Step], Step]:
    def register(step: Step) -> Step:
        assert version == len(MIGRATIONS) + 1, "migrations are numbered 1, 2, ... in order"
        MIGRATIONS.append((version, description, step))
        return step

    return register


@migration(1, "initial layout")
async def _initial(conn: aiosqlite.Connection) -> None:
    for statement in schema_ddl().split(";"):
        if statement.strip():
            await conn.execute(statement)


@migration(2, "public keys in the node registry")
async def _node_keys(conn: aiosqlite.Connection) -> None:
    for column in ("key_version INTEGER", "sign_pub BLOB", "kem_pub BLOB"):
        await conn.execute(f"ALTER TABLE nodes ADD COLUMN {column}")


_REF_FIELDS = KeyRef.__struct_fields__
_WRAP_FIELDS = KeyWrap.__struct_fields__


@migration(3, "key records: what a record is, and how its key is held, as one field each")
async def _compact_key_records(conn: aiosqlite.Connection) -> None:
    """Fold each key record's merge states into ``ref`` (the written-once members)
    and ``wrap`` (scope version and wrapped key). A folded state takes the stamp
    of the newest state it folds, so every node folding the same states gets the
    same result. The table's columns stay as they were. (Schema 2 nodes cannot
    sync with schema 3 ones: upgrade HQ and its sites together.)"""
    decode, encode = msgspec.msgpack.decode, msgspec.msgpack.encode
    async with conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'keys'") as cur:
        if await cur.fetchone() is None:
            return  # made before key records existed: `add_missing_columns` creates the table
    async with conn.execute("SELECT row_id, _state FROM keys") as cur:
        rows = await cur.fetchall()
    updates = []
    for row_id, state in rows:
        doc = decode(state)
        if "ref" in doc or "wrap" in doc:
            continue
        out = {name: entry for name, entry in doc.items() if name not in _REF_FIELDS + _WRAP_FIELDS}
        for field, cls, members in (("ref", KeyRef, _REF_FIELDS), ("wrap", KeyWrap, _WRAP_FIELDS)):
            entries = {m: doc[m] for m in members if m in doc}
            if not entries:
                continue
            newest = max(entries.values(), key=lambda e: (e[1], e[2]))
            value = cls(**{m: decode(e[0]) for m, e in entries.items()})
            out[field] = [encode(value), newest[1], newest[2], max(e[3] for e in entries.values()), newest[4]]
        updates.append((encode(out), row_id))
    await conn.executemany("UPDATE keys SET _state = ? WHERE row_id = ?", updates)


@migration(4, "local sign-in state: sessions, refresh tokens, devices")
async def _auth_tables(conn: aiosqlite.Connection) -> None:
    # the users columns added with it (password_hash, tokens_valid_after_ms) and
    # the username index come from `add_missing_columns`, like any new field
    for statement in AUTH_TABLES.split(";"):
        if statement.strip():
            await conn.execute(statement)


@migration(5, "scoped replication: the rows each downstream holds, drops it owes, the upstream's scope")
async def _scope_tables(conn: aiosqlite.Connection) -> None:
    for statement in SCOPE_TABLES.split(";"):
        if statement.strip():
            await conn.execute(statement)


@migration(6, "local access events: append-only, never replicated")
async def _access_events(conn: aiosqlite.Connection) -> None:
    for statement in ACCESS_TABLES:
        await conn.execute(statement)


@migration(7, "the hash-chained audit log; the access events become its first entries")
async def _audit_log(conn: aiosqlite.Connection) -> None:
    for statement in AUDIT_TABLES:
        await conn.execute(statement)
    async with conn.execute("SELECT value FROM meta WHERE key = 'node_id'") as cur:
        found = await cur.fetchone()
    if found is not None:  # an existing store: chain its access events, in order
        node = str(found[0])
        head, entries = genesis(node), []
        async with conn.execute(
            "SELECT at_ms, actor, role, action, collection, row_id, fields, masked, purpose, reference, outcome, "
            "status, reason FROM access_events ORDER BY event_id"
        ) as cur:
            for seq, r in enumerate(await cur.fetchall(), start=1):
                draft = AuditDraft(at_ms=r[0], actor=r[1], role=r[2], action=r[3], collection=r[4],
                                   rows=(r[5],) if r[5] else (), masked=tuple(filter(None, r[7].split(","))),
                                   **{"shown" if r[3] == "read" else "fields": tuple(filter(None, r[6].split(",")))},
                                   purpose=r[8], reference=r[9],
                                   outcome=r[10], status=r[11], reason=r[12])
                entries.append(chain_entry(node, seq, head, draft))
                head = entries[-1].hash
        await conn.executemany(audit_rows.INSERT, [audit_rows.audit_params(e) for e in entries])
        await conn.executemany(audit_rows.ROWS_INSERT, [p for e in entries for p in audit_rows.subject_params(e)])
    await conn.execute("DROP TABLE access_events")


LAYOUT_VERSION = len(MIGRATIONS)


async def add_missing_columns(conn: aiosqlite.Connection) -> list[str]:
    """Create tables and columns for collections and fields added to the schema."""
    added: list[str] = []
    for spec in COLLECTIONS.values():
        async with conn.execute(f"PRAGMA table_info({spec.name})") as cur:
            have = {row[1] for row in await cur.fetchall()}
        if not have:
            for statement in collection_table(spec).split(";"):
                if statement.strip():
                    await conn.execute(statement)
            added.append(spec.name)
            continue
        for c in spec.columns.values():
            if c.name not in have:
                not_null = "" if c.nullable else " NOT NULL"
                await conn.execute(
                    f"ALTER TABLE {spec.name} ADD COLUMN {c.name} {c.sql_type}{not_null} "
                    f"DEFAULT {_sql_literal(c)}"
                )
                added.append(f"{spec.name}.{c.name}")
            if c.index:
                await conn.execute(column_index(spec, c))
    return added


async def migrate(conn: aiosqlite.Connection, current: int) -> list[str]:
    """Run every migration after ``current``; returns their descriptions."""
    done = []
    for version, description, step in MIGRATIONS:
        if version <= current:
            continue
        await conn.execute("BEGIN IMMEDIATE")
        try:
            await step(conn)
            await conn.execute(f"PRAGMA user_version = {version}")
        except BaseException:
            await conn.execute("ROLLBACK")
            raise
        await conn.execute("COMMIT")
        done.append(description)
    return done
