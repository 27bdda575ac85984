"""Store layout migrations, in the style of sqlite-utils' registry.

``PRAGMA user_version`` holds the layout version. Each migration runs once, in
order, inside the transaction that bumps the version. Fields added to the schema
later (appended, with defaults) need no hand-written step: `add_missing_columns`
adds their columns and any new collection's table on every open.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import aiosqlite

from sync.schema import COLLECTIONS
from sync.store.ddl import AUTH_TABLES, _sql_literal, collection_table, field_index, schema_ddl

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


@migration(3, "local sign-in state: sessions, refresh tokens, devices")
async def _auth_tables(conn: aiosqlite.Connection) -> None:
    # the users columns added with it (password_hash, tokens_valid_after_ms) and
    # the username index come from `add_missing_columns`, like any new field
    for statement in AUTH_TABLES.split(";"):
        if statement.strip():
            await conn.execute(statement)


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
        for f in spec.fields.values():
            if f.name not in have:
                not_null = "" if f.nullable else " NOT NULL"
                await conn.execute(
                    f"ALTER TABLE {spec.name} ADD COLUMN {f.name} {f.sql_type}{not_null} "
                    f"DEFAULT {_sql_literal(f)}"
                )
                added.append(f"{spec.name}.{f.name}")
            if f.index:
                await conn.execute(field_index(spec, f))
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
