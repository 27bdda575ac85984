"""SQLite tables, derived from `sync.schema`.

Each collection has one table (``customers``, ``tasks``, ...) with one row per
entity:

* one column per field, holding its plain value for queries: sets as a JSON
  array of their members, counters as their sum, PII as sealed ciphertext; a
  Struct-valued field has a column per member instead;
* ``_state``: the merge state of every field, msgpack
  ``{field: [value, hlc, origin, seq, src]}`` with the canonical value, the HLC
  stamp and origin of the write, the local sequence number ``seq`` given when the
  state was stored here, and ``src``, the peer that delivered it ('' when written
  or merged here), so that a link never echoes a peer's own changes back to it;
* ``_seq``: the greatest ``seq`` of the row's fields, indexed: "changes after
  cursor N" reads rows in ``_seq`` order.

One row per entity rather than one per field keeps a 100,000-customer sync at
100,000 row writes instead of a million.
"""

from __future__ import annotations

import json

import msgspec

from sync.schema import COLLECTIONS, OPEN_TASK_STATUSES, CollectionSpec, Column, FieldSpec

CORE_TABLES = """
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value ANY
) WITHOUT ROWID, STRICT;

CREATE TABLE links (
    peer           TEXT PRIMARY KEY,
    direction      TEXT NOT NULL CHECK (direction IN ('upstream', 'downstream')),
    peer_store_id  TEXT,
    pull_since     INTEGER NOT NULL DEFAULT 0,
    pull_cursor    INTEGER NOT NULL DEFAULT 0,
    push_since     INTEGER NOT NULL DEFAULT 0,
    push_cursor    INTEGER NOT NULL DEFAULT 0,
    acked_since    INTEGER NOT NULL DEFAULT 0,
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


#: Sign-in state local to one node, never replicated (see server/sessions.py).
#: Secrets are stored only as SHA-256 hashes: they are 32 random bytes, so a fast
#: hash is enough, and a copy of the database holds nothing that signs anyone in.
#: A session is one sign-in (or device exchange): a family of refresh tokens, each
#: used once; ``rev`` is the user's ``tokens_valid_after_ms`` when it began.
AUTH_TABLES = """
CREATE TABLE auth_sessions (
    session_id   TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL,
    device_id    TEXT,
    rev          INTEGER NOT NULL,
    created_ms   INTEGER NOT NULL,
    expires_ms   INTEGER NOT NULL,
    revoked_ms   INTEGER,
    revoked_why  TEXT
) WITHOUT ROWID, STRICT;

CREATE INDEX auth_sessions_user ON auth_sessions (user_id);

CREATE TABLE auth_refresh_tokens (
    token_hash   BLOB PRIMARY KEY,
    session_id   TEXT NOT NULL,
    issued_ms    INTEGER NOT NULL,
    used_ms      INTEGER
) WITHOUT ROWID, STRICT;

CREATE INDEX auth_refresh_tokens_session ON auth_refresh_tokens (session_id);

CREATE TABLE auth_devices (
    device_id    TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL,
    secret_hash  BLOB NOT NULL,
    label        TEXT,
    rev          INTEGER NOT NULL,
    enrolled_ms  INTEGER NOT NULL,
    revoked_ms   INTEGER
) WITHOUT ROWID, STRICT;
"""


#: What an upstream knows of each downstream's scoped copy, never replicated:
#: the governed rows it holds (confirmed by its next pull), and the rows it must
#: drop (`sync.changes.RowDrop`) that it has not yet confirmed; and in the
#: registry, when a node's offboarding began and its credentials were retired.
SCOPE_TABLES = """
CREATE TABLE peer_rows (
    peer        TEXT NOT NULL,
    collection  TEXT NOT NULL,
    row_id      TEXT NOT NULL,
    PRIMARY KEY (peer, collection, row_id)
) WITHOUT ROWID, STRICT;

CREATE TABLE peer_drops (
    peer        TEXT NOT NULL,
    collection  TEXT NOT NULL,
    row_id      TEXT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('purge', 'reset')),
    PRIMARY KEY (peer, collection, row_id)
) WITHOUT ROWID, STRICT;

ALTER TABLE links ADD COLUMN pull_scope TEXT NOT NULL DEFAULT '';

ALTER TABLE nodes ADD COLUMN offboarding_ms INTEGER;

ALTER TABLE nodes ADD COLUMN retired_ms INTEGER;
"""


#: What travels ahead of other changes in sync (`SqliteStore.priority_after`): a
#: do-not-call or any other suppression reason on a customer, and a consent
#: record (a withdrawal above all). collection -> the priority field (None:
#: every field of the row), and the condition of the rows that can hold one.
PRIORITY: dict[str, tuple[str | None, str]] = {
    "customers": ("suppression", "suppression != '[]'"),
    "consents": (None, "1"),
}

#: Makes "priority states after seq N" cheap: the customers with a suppression
#: reason, by ``_seq`` (consents have their ``_seq`` index already). Partial, so
#: it holds only suppressed customers, and ``_seq`` only grows, so a write
#: appends to it. Idempotent: `SqliteStore.open` runs it on every store.
PRIORITY_INDEXES: tuple[str, ...] = (
    "CREATE INDEX IF NOT EXISTS customers__suppressed ON customers (_seq) WHERE suppression != '[]'",
)

#: the sort key of a task without a due time: after every real one
NO_DUE = (1 << 48) - 1
#: the open tasks (`OPEN_TASK_STATUSES`), as a query must say it for SQLite to
#: use `WORK_INDEXES`, whose condition it is
OPEN_TASKS = f"deleted = 0 AND status IN ({', '.join(repr(s) for s in OPEN_TASK_STATUSES)})"
#: the work order: due time (none last), then priority (9 first), then row id
WORK_ORDER = f"coalesce(due_at_ms, {NO_DUE}), priority DESC, row_id"
#: Makes a user's work queue (`SqliteStore.work_queue`) a walk of one index in
#: work order, as long as a page: the open tasks by assignee. Partial, so done
#: and archived tasks, most of the table, cost it nothing. And makes a
#: customer's recent results (the offer check's: today's and within the retry
#: spacing) a range of an index, not a read of the customer's whole call
#: history. Idempotent, as `PRIORITY_INDEXES`.
WORK_INDEXES: tuple[str, ...] = (
    f"CREATE INDEX IF NOT EXISTS tasks__open_work ON tasks (assignee, {WORK_ORDER}) WHERE {OPEN_TASKS}",
    "CREATE INDEX IF NOT EXISTS results__customer_recorded ON results (customer_id, recorded_at_ms)",
)


def _sql_literal(column: Column) -> str:
    if column.member is not None:
        return "NULL"
    spec = column.field
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
    """CREATE TABLE (and the ``_seq`` index) for one collection."""
    columns = ["    row_id TEXT NOT NULL PRIMARY KEY"]
    for c in spec.columns.values():
        not_null = "" if c.nullable else " NOT NULL"
        columns.append(f"    {c.name} {c.sql_type}{not_null} DEFAULT {_sql_literal(c)}")
    columns.append("    _seq INTEGER NOT NULL")
    columns.append("    _state BLOB NOT NULL")
    return (
        f"CREATE TABLE {spec.name} (\n" + ",\n".join(columns) + "\n);\n"
        f"CREATE INDEX {spec.name}__seq ON {spec.name} (_seq);\n"
        + "".join(column_index(spec, c) for c in spec.columns.values() if c.index)
    )


def column_index(spec: CollectionSpec, c: Column) -> str:
    """CREATE INDEX for a column declared indexed (idempotent)."""
    return f"CREATE INDEX IF NOT EXISTS {spec.name}_{c.name} ON {spec.name} ({c.name});\n"


def schema_ddl() -> str:
    """The whole schema of a new store."""
    return CORE_TABLES + "".join(collection_table(c) for c in COLLECTIONS.values())


def column_value(spec: FieldSpec, value: object) -> object:
    """A materialized value as stored in its SQL column (see `member_columns` for
    a Struct-valued field)."""
    if spec.merge == "add_wins_set":
        return json.dumps(sorted(value), ensure_ascii=False)  # type: ignore[call-overload]
    if isinstance(value, list):  # a JSON array, in order
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, bool):
        return int(value)
    return value


def member_columns(spec: FieldSpec, value: object) -> dict[str, object]:
    """The columns of a Struct-valued field: one per member (all NULL for None)."""
    if value is None:
        return dict.fromkeys(spec.members)
    return {m: column_value(spec, getattr(value, m)) for m in spec.members}


#: Access events, local to one node, append-only, never replicated: who read,
#: revealed, changed or was refused which row through this node's API, with
#: field *names*, purpose and reason codes and never a value (server/access_events.py).
#: ``fields``/``masked`` are comma-separated names. The triggers refuse any UPDATE
#: or DELETE; AUTOINCREMENT never reuses an id. Statements one by one (trigger
#: bodies hold ``;``), each idempotent, so the step can run over a store that
#: has the table already.
ACCESS_TABLES: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS access_events (
    event_id    INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms       INTEGER NOT NULL,
    actor       TEXT NOT NULL,
    role        TEXT,
    action      TEXT NOT NULL,
    collection  TEXT NOT NULL,
    row_id      TEXT,
    fields      TEXT NOT NULL DEFAULT '',
    masked      TEXT NOT NULL DEFAULT '',
    purpose     TEXT,
    reference   TEXT,
    outcome     TEXT NOT NULL CHECK (outcome IN ('ok', 'refused')),
    status      INTEGER NOT NULL,
    reason      TEXT
) STRICT""",
    "CREATE INDEX IF NOT EXISTS access_events_actor ON access_events (actor, action, at_ms)",
    "CREATE INDEX IF NOT EXISTS access_events_row ON access_events (row_id)",
    """CREATE TRIGGER IF NOT EXISTS access_events_no_update BEFORE UPDATE ON access_events
BEGIN SELECT RAISE(ABORT, 'access_events is append-only'); END""",
    """CREATE TRIGGER IF NOT EXISTS access_events_no_delete BEFORE DELETE ON access_events
BEGIN SELECT RAISE(ABORT, 'access_events is append-only'); END""",
)


#: The audit log (sync/audit.py, server/audit_log.py): every node's own
#: hash-chained entries (``node`` = this node) and, above the leaves, the chains
#: collected from the nodes below, forwarded up by sync (``rowid`` is arrival
#: order, the forwarding cursor). ``rows``, ``fields`` and ``masked`` are
#: comma-separated ids and names, ``counts`` JSON or ''. Entries are never
#: updated, and deleted only by retention, up to the node's anchor: the signed
#: checkpoint the retained chain now starts after. ``audit_rows`` indexes entries
#: by the rows they name ("who accessed this customer"). ``audit_verified``: how
#: far this store has checked each collected chain; ``audit_alerts``: the breaks
#: found, each named once.
AUDIT_TABLES: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS audit_entries (
    node        TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    at_ms       INTEGER NOT NULL,
    actor       TEXT NOT NULL,
    role        TEXT,
    action      TEXT NOT NULL,
    collection  TEXT NOT NULL,
    rows        TEXT NOT NULL,
    fields      TEXT NOT NULL,
    shown       TEXT NOT NULL,
    masked      TEXT NOT NULL,
    purpose     TEXT,
    reference   TEXT,
    peer        TEXT,
    counts      TEXT NOT NULL,
    outcome     TEXT NOT NULL,
    status      INTEGER NOT NULL,
    reason      TEXT,
    prev        BLOB NOT NULL,
    hash        BLOB NOT NULL,
    UNIQUE (node, seq)
) STRICT""",
    "CREATE INDEX IF NOT EXISTS audit_entries_actor ON audit_entries (actor, action, at_ms)",
    "CREATE INDEX IF NOT EXISTS audit_entries_time ON audit_entries (node, at_ms)",
    """CREATE TABLE IF NOT EXISTS audit_rows (
    row_id  TEXT NOT NULL,
    node    TEXT NOT NULL,
    seq     INTEGER NOT NULL,
    PRIMARY KEY (row_id, node, seq)
) WITHOUT ROWID, STRICT""",
    """CREATE TABLE IF NOT EXISTS audit_anchors (
    node   TEXT PRIMARY KEY,
    seq    INTEGER NOT NULL,
    hash   BLOB NOT NULL,
    at_ms  INTEGER NOT NULL
) WITHOUT ROWID, STRICT""",
    """CREATE TABLE IF NOT EXISTS audit_checkpoints (
    node         TEXT NOT NULL,
    seq          INTEGER NOT NULL,
    hash         BLOB NOT NULL,
    at_ms        INTEGER NOT NULL,
    key_version  INTEGER NOT NULL,
    signature    BLOB NOT NULL,
    UNIQUE (node, seq)
) STRICT""",
    """CREATE TABLE IF NOT EXISTS audit_verified (
    node  TEXT PRIMARY KEY,
    seq   INTEGER NOT NULL,
    hash  BLOB NOT NULL
) WITHOUT ROWID, STRICT""",
    """CREATE TABLE IF NOT EXISTS audit_alerts (
    alert_id  INTEGER PRIMARY KEY AUTOINCREMENT,
    node      TEXT NOT NULL,
    seq       INTEGER NOT NULL,
    kind      TEXT NOT NULL,
    detail    TEXT NOT NULL,
    at_ms     INTEGER NOT NULL,
    UNIQUE (node, seq, kind)
) STRICT""",
    """CREATE TRIGGER IF NOT EXISTS audit_entries_no_update BEFORE UPDATE ON audit_entries
BEGIN SELECT RAISE(ABORT, 'audit entries are append-only'); END""",
    """CREATE TRIGGER IF NOT EXISTS audit_entries_retention BEFORE DELETE ON audit_entries
WHEN OLD.seq > coalesce((SELECT seq FROM audit_anchors WHERE node = OLD.node), 0)
BEGIN SELECT RAISE(ABORT, 'audit entries are deleted only by retention, up to their anchor'); END""",
    """CREATE TRIGGER IF NOT EXISTS audit_anchors_forward BEFORE UPDATE ON audit_anchors
WHEN NEW.seq < OLD.seq OR NEW.node != OLD.node
BEGIN SELECT RAISE(ABORT, 'an audit anchor only moves forward'); END""",
    """CREATE TRIGGER IF NOT EXISTS audit_anchors_no_delete BEFORE DELETE ON audit_anchors
BEGIN SELECT RAISE(ABORT, 'audit anchors are kept'); END""",
    """CREATE TRIGGER IF NOT EXISTS audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'audit checkpoints are append-only'); END""",
)
