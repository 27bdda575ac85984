"""SQLite tables, derived from `sync.schema`.

Two kinds of table hold the replicated data:

* ``changes``: the merge state of every field of every row (canonical msgpack
  value, HLC stamp, origin), numbered with this node's local sequence ``seq``.
  It is the source of truth for merging and answers "changes after cursor N".
  ``src`` names the peer that delivered the stored state ('' when it was written
  or merged here), so a link never echoes a peer's own changes back to it.
* one table per collection (``customers``, ``tasks``, ...): the materialized
  values, one column per field, for queries. Sets hold a JSON array of their
  members, counters their sum, PII columns sealed ciphertext.

Both are written in the same transaction.
"""

from __future__ import annotations

import json

import msgspec

from sync.schema import COLLECTIONS, CollectionSpec, FieldSpec

CORE_TABLES = """
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value ANY
) WITHOUT ROWID, STRICT;

CREATE TABLE changes (
    collection TEXT    NOT NULL,
    row_id     TEXT    NOT NULL,
    field      TEXT    NOT NULL,
    value      BLOB    NOT NULL,
    hlc        INTEGER NOT NULL,
    origin     TEXT    NOT NULL,
    seq        INTEGER NOT NULL,
    src        TEXT    NOT NULL DEFAULT '',
    PRIMARY KEY (collection, row_id, field)
) WITHOUT ROWID, STRICT;
CREATE INDEX changes_by_seq ON changes (seq);

CREATE TABLE links (
    peer           TEXT PRIMARY KEY,
    direction      TEXT NOT NULL CHECK (direction IN ('upstream', 'downstream')),
    peer_store_id  TEXT,
    pull_cursor    INTEGER NOT NULL DEFAULT 0,
    push_cursor    INTEGER NOT NULL DEFAULT 0,
    acked_through  INTEGER NOT NULL DEFAULT 0,
    served_cursor  INTEGER NOT NULL DEFAULT 0,
    last_ok_ms     INTEGER,
    last_error     TEXT,
    last_error_ms  INTEGER,
    changes_in     INTEGER NOT NULL DEFAULT 0,
    changes_out    INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID, STRICT;

CREATE TABLE nodes (
    node_id     TEXT PRIMARY KEY,
    parent      TEXT,
    role        TEXT NOT NULL,
    enrolled_ms INTEGER NOT NULL
) WITHOUT ROWID, STRICT;
"""


def _sql_literal(spec: FieldSpec) -> str:
    default = spec.default
    if spec.merge == "add_wins_set":
        return "'[]'"
    if default is None or default is msgspec.NODEFAULT:
        return "NULL"
    if isinstance(default, bool):
        return str(int(default))
    if isinstance(default, int | float):
        return repr(default)
    if isinstance(default, str):
        return "'" + default.replace("'", "''") + "'"
    raise TypeError(f"no SQL literal for the default of {spec!r}")


def collection_table(spec: CollectionSpec) -> str:
    """CREATE TABLE for the materialized rows of one collection."""
    columns = ["    row_id TEXT PRIMARY KEY"]
    for f in spec.fields.values():
        not_null = "" if f.nullable else " NOT NULL"
        columns.append(f"    {f.name} {f.sql_type}{not_null} DEFAULT {_sql_literal(f)}")
    return f"CREATE TABLE {spec.name} (\n" + ",\n".join(columns) + "\n) WITHOUT ROWID;\n"


def schema_ddl() -> str:
    """The whole schema of a new store."""
    return CORE_TABLES + "\n".join(collection_table(c) for c in COLLECTIONS.values())


def column_value(spec: FieldSpec, value: object) -> object:
    """A materialized value as stored in its SQL column."""
    if spec.merge == "add_wins_set":
        return json.dumps(sorted(value), ensure_ascii=False)  # type: ignore[call-overload]
    if isinstance(value, bool):
        return int(value)
    return value
