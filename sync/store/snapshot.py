"""The store's row reads as plain synchronous code over one connection: one
state of the file for several queries (`SqliteStore.snapshot`).

The store's own single reads (`SqliteStore.find_rows` ...) are these methods,
each run on the aiosqlite reader's thread. A snapshot runs on the event loop's
thread instead, on a read-only connection of its own (`inline_reader`): a trip
to an aiosqlite thread and back costs two thread wake-ups, more CPU than a
small indexed query, and under load the two threads then take turns at the
GIL for every row fetched. A request that reads a page of tasks, their
customers, campaigns and results reads them all at once, as of one commit.

The shared reads (`Snapshot.shared_rows`, `Snapshot.shared_work_queue`) give
read-only rows kept between requests in the store's `RowCache`, so a page
read again makes only the rows written since (see `sync.store.row_cache`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import aiosqlite

from sync.schema import COLLECTIONS
from sync.store.ddl import NO_DUE, OPEN_TASKS, WORK_ORDER
from sync.store.row_cache import RowCache, SharedRow, check_shareable
from sync.store.rows import json_encode, materialize, projection, where

_T = TypeVar("_T")


async def on_thread(conn: aiosqlite.Connection, fn: Callable[..., _T], *args: Any) -> _T:
    """Run ``fn(sqlite3_connection, *args)`` on ``conn``'s own thread in one hop
    (aiosqlite has no public way; its private ``_execute`` and ``_conn`` are it),
    instead of one hop per statement."""
    return await conn._execute(fn, conn._conn, *args)  # type: ignore[no-any-return]  # noqa: SLF001


def inline_reader(path: str) -> sqlite3.Connection:
    """A read-only connection for the event loop's own thread: it never waits
    for a lock (``busy_timeout`` 0), as waiting would stop the loop."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        for pragma in ("busy_timeout = 0", "query_only = ON", "cache_size = -32768", "temp_store = MEMORY"):
            conn.execute(f"PRAGMA {pragma}")
    except BaseException:
        conn.close()
        raise
    return conn


def is_busy(exc: sqlite3.OperationalError) -> bool:
    """Whether SQLite refused for a lock held elsewhere (worth waiting for)."""
    return exc.sqlite_errorcode & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


def read_in_transaction(conn: sqlite3.Connection, fn: Callable[[Snapshot], _T], cache: RowCache | None = None) -> _T:
    """``fn`` over a `Snapshot` of ``conn`` inside one read transaction (in WAL
    mode, every read in it sees the same commit); its shared reads keep rows in
    ``cache``."""
    conn.execute("BEGIN")
    try:
        return fn(Snapshot(conn, cache))
    finally:
        conn.execute("COMMIT")


class Snapshot:
    """The store's row reads, run synchronously on a reader connection. Only
    `SqliteStore` makes one, on the reader's thread; see the module docstring."""

    __slots__ = ("_conn", "_cache")

    def __init__(self, conn: sqlite3.Connection, cache: RowCache | None = None) -> None:
        self._conn = conn
        #: where `shared_rows` keep rows; None: made afresh each time
        self._cache = cache

    def high_seq(self) -> int:
        """The sequence number of the latest write here."""
        (seq,) = self._conn.execute("SELECT value FROM meta WHERE key = 'seq'").fetchone()
        return int(seq)

    def read_row(self, collection: str, row_id: str) -> dict[str, Any] | None:
        """The materialized row (None if no field of it is stored)."""
        spec = COLLECTIONS[collection]
        names, converted = projection(collection, None)
        row = self._conn.execute(f"SELECT {', '.join(names)} FROM {spec.name} WHERE row_id = ?", (row_id,)).fetchone()
        return None if row is None else materialize(converted, names, row)

    def find_rows(
        self, collection: str, *, limit: int = 10_000, after: str = "", fields: tuple[str, ...] | None = None,
        at_least: dict[str, int] | None = None, **equals: Any,
    ) -> list[dict[str, Any]]:
        """Materialized rows whose columns equal ``equals`` (field names of the schema;
        a list, tuple or set value matches any of its members) and are at least
        ``at_least`` (a NULL is not), in row id order after ``after``; with
        ``fields``, only those columns (and ``row_id``) of each."""
        spec = COLLECTIONS[collection]
        names, converted = projection(collection, fields)
        clause, params = where(spec, equals)
        for name, low in (at_least or {}).items():
            if name not in spec.columns:
                raise KeyError(f"{collection} has no field {name!r}")
            clause += f" AND {name} >= ?"
            params.append(low)
        rows = self._conn.execute(
            f"SELECT {', '.join(names)} FROM {spec.name} WHERE {clause} AND row_id > ? ORDER BY row_id LIMIT ?",
            (*params, after, limit),
        ).fetchall()
        return [materialize(converted, names, r) for r in rows]

    def newest_rows(
        self, collection: str, time_field: str, *, limit: int, offset: int = 0, **equals: Any,
    ) -> list[dict[str, Any]]:
        """Materialized rows matching ``equals`` (as in `find_rows`), newest
        ``time_field`` first (none as 0, so last), then row id descending;
        paged by ``offset`` (a snapshot's pages are of one state). Sorted in
        SQLite, so only a page of a long history reaches Python."""
        spec = COLLECTIONS[collection]
        if time_field not in spec.columns:
            raise KeyError(f"{collection} has no field {time_field!r}")
        names, converted = projection(collection, None)
        clause, params = where(spec, equals)
        rows = self._conn.execute(
            f"SELECT {', '.join(names)} FROM {spec.name} WHERE {clause} "
            f"ORDER BY coalesce({time_field}, 0) DESC, row_id DESC LIMIT ? OFFSET ?", (*params, limit, offset),
        ).fetchall()
        return [materialize(converted, names, r) for r in rows]

    def rows_after(
        self, collection: str, after_seq: int, *, limit: int = 1_000, any_of: tuple[str, ...] = (), **equals: Any
    ) -> list[tuple[int, dict[str, Any]]]:
        """(``_seq``, materialized row) of rows written after ``after_seq``, in order,
        that match ``equals`` (as in `find_rows`) and hold any field of ``any_of``:
        how the edge's background work follows what changed."""
        spec = COLLECTIONS[collection]
        names, converted = projection(collection, None)
        clause, params = where(spec, equals, any_of)
        rows = self._conn.execute(
            f"SELECT _seq, {', '.join(names)} FROM {spec.name} WHERE _seq > ? AND {clause} ORDER BY _seq LIMIT ?",
            (after_seq, *params, limit),
        ).fetchall()
        return [(r[0], materialize(converted, names, r[1:])) for r in rows]

    def work_queue(
        self, *, limit: int, after: tuple[int, int, str] | None = None, due_before: int | None = None,
        priority_min: int | None = None, **equals: Any,
    ) -> list[dict[str, Any]]:
        """Open tasks (`OPEN_TASK_STATUSES`, not deleted) matching ``equals`` (as in
        `find_rows`), in work order (`WORK_ORDER`): due time (none last), then
        priority (9 first), then row id; keyset-paged after the (due key,
        priority, row id) of the last one read. By one assignee, a walk of
        `WORK_INDEXES` as long as the page."""
        names, converted = projection("tasks", None)
        tail, params = _work_queue_query(limit, after, due_before, priority_min, equals)
        rows = self._conn.execute(f"SELECT {', '.join(names)} {tail}", params).fetchall()
        return [materialize(converted, names, r) for r in rows]

    def shared_work_queue(
        self, *, limit: int, after: tuple[int, int, str] | None = None, due_before: int | None = None,
        priority_min: int | None = None, **equals: Any,
    ) -> list[Mapping[str, Any]]:
        """`work_queue`'s rows, shared and read-only (see `shared_rows`)."""
        return self._shared("tasks", projection("tasks", None),
                            *_work_queue_query(limit, after, due_before, priority_min, equals))

    def shared_rows(self, collection: str, row_ids: list[str], fields: tuple[str, ...]) -> list[Mapping[str, Any]]:
        """The rows of ``row_ids`` held here, ``fields`` (and ``row_id``) of each, in
        row id order: read-only mappings that may be shared with other readers
        and are kept for them (`sync.store.row_cache`), so only rows written
        since one was last read are materialized. No sealed field may be asked
        for (`SealedProjectionError`)."""
        spec = COLLECTIONS[collection]
        tail = f"FROM {spec.name} WHERE row_id IN (SELECT value FROM json_each(?)) ORDER BY row_id"
        return self._shared(collection, projection(collection, fields), tail, [json_encode(sorted(row_ids)).decode()])

    def _shared(self, collection: str, projected: tuple[tuple[str, ...], tuple[tuple[str, bool], ...]],
                tail: str, params: list[Any]) -> list[Mapping[str, Any]]:
        """The rows ``SELECT ... {tail}`` reads, through the store's `RowCache`:
        materialized only when not kept as of their ``_seq``. When most are
        kept (`RowCache.expects_hits`), their (row id, ``_seq``) are read first,
        then only the rows not kept, by id; else every row at once. All in
        this one read transaction."""
        names, converted = projected
        check_shareable(collection, names)
        columns = ", ".join(names)
        cache = self._cache
        if cache is None:  # a read off the event loop's thread (`SqliteStore.snapshot`): nothing kept
            return [SharedRow(materialize(converted, names, r))
                    for r in self._conn.execute(f"SELECT {columns} {tail}", params).fetchall()]
        if cache.expects_hits(collection, names):
            versions = self._conn.execute(f"SELECT row_id, _seq {tail}", params).fetchall()
            out = cache.find(collection, names, versions)
            missing = [row_id for (row_id, _), row in zip(versions, out) if row is None]
            if not missing:
                return out  # type: ignore[return-value]  # every one kept
            fetched = self._conn.execute(
                f"SELECT _seq, {columns} FROM {COLLECTIONS[collection].name} "
                "WHERE row_id IN (SELECT value FROM json_each(?))", (json_encode(missing).decode(),)).fetchall()
        else:
            whole = self._conn.execute(f"SELECT _seq, {columns} {tail}", params).fetchall()
            versions = [(r[1], r[0]) for r in whole]
            out = cache.find(collection, names, versions)
            fetched = [r for r, row in zip(whole, out) if row is None]
        made = cache.keep(collection, names, ((r[0], materialize(converted, names, r[1:])) for r in fetched))
        return [row if row is not None else made[row_id] for (row_id, _), row in zip(versions, out)]


def _work_queue_query(limit: int, after: tuple[int, int, str] | None, due_before: int | None,
                      priority_min: int | None, equals: dict[str, Any]) -> tuple[str, list[Any]]:
    """The FROM ... LIMIT of `Snapshot.work_queue`'s query, and its parameters."""
    clause, params = where(COLLECTIONS["tasks"], equals)
    clause += f" AND {OPEN_TASKS}"
    if due_before is not None:
        clause += " AND due_at_ms < ?"
        params.append(due_before)
    if priority_min is not None:
        clause += " AND priority >= ?"
        params.append(priority_min)
    if after is not None:
        clause += f" AND (coalesce(due_at_ms, {NO_DUE}), -priority, row_id) > (?, ?, ?)"
        params += [after[0], -after[1], after[2]]
    return f"FROM tasks WHERE {clause} ORDER BY {WORK_ORDER} LIMIT ?", [*params, limit]
