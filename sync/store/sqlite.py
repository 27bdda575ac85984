"""The SQLite replica store (aiosqlite, WAL).

One file per node. Every batch is merged and stored in one ``BEGIN IMMEDIATE``
transaction together with the cursor it advances, so a crash at any point leaves
either the whole batch and its cursor or neither. ``synchronous=FULL`` makes a
committed (and therefore acknowledged) batch survive power loss as well as
``kill -9``.

Two connections: a writer, and a reader for pulls, digests and status, so that
serving a pull never waits behind a long apply (WAL gives readers a snapshot).

The local sequence lives in ``meta.seq`` and only grows, even when rows are later
purged, so a cursor never meets a reused number. It is read inside each write
transaction, so two processes on one file (``outpost serve`` and ``outpost
sync``) still number changes correctly; the HLC's last stamp is kept beside it
for the same reason.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import aiosqlite
import msgspec

from sync.changes import Change, RefusedChange
from sync.edits import Edit, edit_state, spec_of
from sync.hlc import Clock
from sync.ids import new_ulid
from sync.merge import Applied, FieldState, Refused, materialize, merge_for
from sync.protocol import Incoming
from sync.schema import COLLECTIONS, SCHEMA_VERSION, FieldSpec
from sync.store import ApplyReport, LinkState, NodeRecord, Page
from sync.store.ddl import column_value
from sync.store.errors import StoreExistsError, StoreMissingError, StoreOwnerError, StoreVersionError
from sync.store.migrations import LAYOUT_VERSION, add_missing_columns, migrate

_LINK_COLUMNS = tuple(LinkState.__struct_fields__)
_Key = tuple[str, str, str]

#: row ids per `json_each` lookup of current states
_LOOKUP_CHUNK = 2_000


async def _connect(path: str) -> aiosqlite.Connection:
    conn = await aiosqlite.connect(path, isolation_level=None)
    await conn.execute("PRAGMA journal_mode = WAL")
    await conn.execute("PRAGMA synchronous = FULL")
    await conn.execute("PRAGMA busy_timeout = 10000")
    await conn.execute("PRAGMA secure_delete = ON")
    await conn.execute("PRAGMA cache_size = -32768")  # 32 MiB
    await conn.execute("PRAGMA temp_store = MEMORY")
    return conn


class SqliteStore:
    """A node's replica in one SQLite file. Create with `create`, open with `open`."""

    def __init__(
        self,
        path: str,
        writer: aiosqlite.Connection,
        reader: aiosqlite.Connection,
        *,
        node_id: str,
        store_id: str,
        role: str,
        clock: Clock,
    ) -> None:
        self.path = path
        self._w = writer
        self._r = reader
        self.node_id = node_id
        self.store_id = store_id
        self.role = role
        self.clock = clock

    # ------------------------------------------------------------ lifecycle

    @classmethod
    async def create(
        cls,
        path: str | os.PathLike[str],
        *,
        node_id: str,
        role: str,
        clock: Clock,
        entropy: bytes | None = None,
    ) -> SqliteStore:
        """Create a new store for ``node_id`` (raises `StoreExistsError` if one is there)."""
        path = str(path)
        if path != ":memory:" and Path(path).exists() and Path(path).stat().st_size > 0:
            raise StoreExistsError(path)
        conn = await _connect(path)
        try:
            await migrate(conn, 0)
            store_id = new_ulid(clock.now_ms(), entropy if entropy is not None else os.urandom(10))
            await conn.execute("BEGIN IMMEDIATE")
            await conn.executemany(
                "INSERT INTO meta (key, value) VALUES (?, ?)",
                [
                    ("node_id", node_id),
                    ("store_id", store_id),
                    ("role", role),
                    ("schema_version", SCHEMA_VERSION),
                    ("created_ms", clock.now_ms()),
                    ("seq", 0),
                    ("hlc", 0),
                ],
            )
            await conn.execute(
                "INSERT INTO nodes (node_id, parent, role, enrolled_ms) VALUES (?, NULL, ?, ?)",
                (node_id, role, clock.now_ms()),
            )
            await conn.execute("COMMIT")
        finally:
            await conn.close()
        return await cls.open(path, node_id=node_id, clock=clock)

    @classmethod
    async def open(cls, path: str | os.PathLike[str], *, clock: Clock, node_id: str | None = None) -> SqliteStore:
        """Open an existing store, migrating its layout if this Outpost is newer.

        Raises `StoreMissingError`, `StoreOwnerError` (the file belongs to another
        node) or `StoreVersionError` (written by a newer Outpost).
        """
        path = str(path)
        if path != ":memory:" and not Path(path).exists():
            raise StoreMissingError(path)
        writer = await _connect(path)
        try:
            async with writer.execute("PRAGMA user_version") as cur:
                (layout,) = await cur.fetchone()  # type: ignore[misc]
            if layout == 0:
                raise StoreMissingError(path)
            if layout > LAYOUT_VERSION:
                raise StoreVersionError(path, layout, LAYOUT_VERSION)
            await migrate(writer, layout)
            await add_missing_columns(writer)
            meta = await _read_meta(writer)
            if node_id is not None and meta["node_id"] != node_id:
                raise StoreOwnerError(path, node_id, str(meta["node_id"]))
            clock.last = max(clock.last, int(meta["hlc"]))
            reader = await _connect(path)
        except BaseException:
            await writer.close()
            raise
        return cls(
            path,
            writer,
            reader,
            node_id=str(meta["node_id"]),
            store_id=str(meta["store_id"]),
            role=str(meta["role"]),
            clock=clock,
        )

    async def close(self) -> None:
        await self._r.close()
        await self._w.close()

    # ------------------------------------------------------------ writing

    async def write_local(self, edits: list[Edit]) -> list[Change]:
        """Apply edits made at this node under one new stamp; returns the changes stored.

        Raises `InvalidEditError` (nothing is written) when any edit is invalid.
        """
        if not edits:
            return []
        specs = [spec_of(e) for e in edits]
        await self._w.execute("BEGIN IMMEDIATE")
        try:
            seq, hlc_high = await self._seq_and_hlc()
            self.clock.last = max(self.clock.last, hlc_high)
            stamp = self.clock.send()
            current = await self._current_states([(s.collection, e.row_id) for s, e in zip(specs, edits)])
            winners: dict[_Key, tuple[FieldState, str, FieldSpec]] = {}
            for spec, edit in zip(specs, edits):
                key = (spec.collection, edit.row_id, spec.name)
                cur = current.get(key)
                new = edit_state(spec, cur, edit, stamp, self.node_id)
                if new is cur:
                    continue
                current[key] = new
                winners[key] = (new, "", spec)
            seq = await self._store_winners(winners, seq)
            await self._set_seq_and_hlc(seq, stamp)
            await self._w.execute("COMMIT")
        except BaseException:
            await self._w.execute("ROLLBACK")
            raise
        return [
            Change(k[0], k[1], k[2], msgspec.Raw(state.raw), state.hlc, state.origin)
            for k, (state, _, _) in winners.items()
        ]

    async def apply_pulled(
        self, incoming: list[Incoming], *, peer: str, peer_store_id: str, cursor: int
    ) -> ApplyReport:
        """Merge a page pulled from ``peer`` and move the pull cursor, in one transaction.

        Local states not yet pushed (``seq`` after the push cursor) that the page
        overrides or beats count as conflicts.
        """
        link = await self.link(peer)
        unseen_after = link.push_cursor if link is not None else 0

        async def advance() -> None:
            await self._w.execute(
                "UPDATE links SET pull_cursor = ?, peer_store_id = ?, last_ok_ms = ?, "
                "last_error = NULL, changes_in = changes_in + ? WHERE peer = ?",
                (cursor, peer_store_id, self.clock.now_ms(), len(incoming), peer),
            )

        return await self._apply(incoming, src=peer, link_update=advance, unseen_after=unseen_after)

    async def apply_pushed(
        self, incoming: list[Incoming], *, peer: str, peer_store_id: str, to_seq: int
    ) -> ApplyReport:
        """Merge a push from ``peer`` and record it as acknowledged, in one transaction.

        States stored here after the last page served to ``peer`` are ones it had
        not seen: a different value there counts as a conflict.
        """
        link = await self.link(peer)
        unseen_after = link.served_cursor if link is not None else 0

        async def acknowledge() -> None:
            await self._w.execute(
                "UPDATE links SET acked_through = max(acked_through, ?), peer_store_id = ?, last_ok_ms = ?, "
                "last_error = NULL, changes_in = changes_in + ? WHERE peer = ?",
                (to_seq, peer_store_id, self.clock.now_ms(), len(incoming), peer),
            )

        return await self._apply(incoming, src=peer, link_update=acknowledge, unseen_after=unseen_after)

    async def _apply(
        self, incoming: list[Incoming], *, src: str, link_update: Any, unseen_after: int
    ) -> ApplyReport:
        applied = superseded = conflicts = 0
        refused: list[RefusedChange] = []
        await self._w.execute("BEGIN IMMEDIATE")
        try:
            seq, hlc_high = await self._seq_and_hlc()
            unseen: set[_Key] = set()
            current = await self._current_states(
                [(i.spec.collection, i.row_id) for i in incoming], unseen, src, unseen_after
            )
            winners: dict[_Key, tuple[FieldState, str, FieldSpec]] = {}
            max_hlc = hlc_high
            for inc in incoming:
                spec = inc.spec
                key = (spec.collection, inc.row_id, spec.name)
                state = inc.state
                cur = current.get(key)
                if key in unseen and cur is not None and cur.raw != state.raw:
                    conflicts += 1
                    unseen.discard(key)
                outcome = merge_for(spec)(cur, state)
                if type(outcome) is Applied:
                    new = outcome.state
                    current[key] = new
                    winners[key] = (new, src if new is state else "", spec)
                    applied += 1
                    if state.hlc > max_hlc:
                        max_hlc = state.hlc
                elif type(outcome) is Refused:
                    refused.append(RefusedChange(inc.index, outcome.reason))
                else:
                    superseded += 1
            seq = await self._store_winners(winners, seq)
            await self._set_seq_and_hlc(seq, max_hlc)
            await link_update()
            await self._w.execute("COMMIT")
        except BaseException:
            await self._w.execute("ROLLBACK")
            raise
        # stamps were drift-checked before the batch; only keep the clock ahead of them
        self.clock.last = max(self.clock.last, max_hlc)
        return ApplyReport(applied, superseded, refused, seq, conflicts)

    async def _seq_and_hlc(self) -> tuple[int, int]:
        async with self._w.execute("SELECT key, value FROM meta WHERE key IN ('seq', 'hlc')") as cur:
            meta = dict(await cur.fetchall())
        return int(meta["seq"]), int(meta["hlc"])

    async def _set_seq_and_hlc(self, seq: int, hlc: int) -> None:
        await self._w.executemany(
            "UPDATE meta SET value = max(value, ?) WHERE key = ?", [(seq, "seq"), (hlc, "hlc")]
        )

    async def _current_states(
        self,
        rows: list[tuple[str, str]],
        unseen: set[_Key] | None = None,
        src: str = "",
        unseen_after: int = 0,
    ) -> dict[_Key, FieldState]:
        """Stored states of every field of these rows; fills ``unseen`` with the keys
        whose state ``src`` did not send and that changed after ``unseen_after``."""
        by_collection: dict[str, set[str]] = defaultdict(set)
        for collection, row_id in rows:
            by_collection[collection].add(row_id)
        found: dict[_Key, FieldState] = {}
        for collection, row_ids in by_collection.items():
            ids = sorted(row_ids)
            for i in range(0, len(ids), _LOOKUP_CHUNK):
                async with self._w.execute(
                    "SELECT row_id, field, value, hlc, origin, seq, src FROM changes "
                    "WHERE collection = ? AND row_id IN (SELECT value FROM json_each(?))",
                    (collection, json.dumps(ids[i : i + _LOOKUP_CHUNK])),
                ) as cur:
                    for row_id, field, value, hlc, origin, seq, row_src in await cur.fetchall():
                        key = (collection, row_id, field)
                        found[key] = FieldState(value, hlc, origin)
                        if unseen is not None and seq > unseen_after and row_src != src:
                            unseen.add(key)
        return found

    async def _store_winners(
        self, winners: dict[_Key, tuple[FieldState, str, FieldSpec]], seq: int
    ) -> int:
        """Write new field states (numbered from ``seq`` + 1) and their materialized rows."""
        if not winners:
            return seq
        params = []
        rows: dict[tuple[str, str], dict[str, Any]] = defaultdict(dict)
        for (collection, row_id, field), (state, src, spec) in winners.items():
            seq += 1
            params.append((collection, row_id, field, state.raw, state.hlc, state.origin, seq, src))
            rows[(collection, row_id)][field] = column_value(spec, materialize(spec, state.raw))
        await self._w.executemany(
            "INSERT INTO changes (collection, row_id, field, value, hlc, origin, seq, src) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (collection, row_id, field) DO UPDATE SET "
            "value = excluded.value, hlc = excluded.hlc, origin = excluded.origin, "
            "seq = excluded.seq, src = excluded.src",
            params,
        )
        shapes: dict[tuple[str, tuple[str, ...]], list[tuple[Any, ...]]] = defaultdict(list)
        for (collection, row_id), cols in rows.items():
            names = tuple(cols)
            shapes[(collection, names)].append((row_id, *cols.values()))
        for (collection, names), batch in shapes.items():
            placeholders = ", ".join("?" * (len(names) + 1))
            updates = ", ".join(f"{n} = excluded.{n}" for n in names)
            await self._w.executemany(
                f"INSERT INTO {collection} (row_id, {', '.join(names)}) VALUES ({placeholders}) "
                f"ON CONFLICT (row_id) DO UPDATE SET {updates}",
                batch,
            )
        return seq

    # ------------------------------------------------------------ reading changes

    async def high_seq(self) -> int:
        async with self._r.execute("SELECT value FROM meta WHERE key = 'seq'") as cur:
            (seq,) = await cur.fetchone()  # type: ignore[misc]
        return int(seq)

    async def changes_after(self, cursor: int, *, limit: int, exclude_src: str) -> Page:
        """Up to ``limit`` stored changes after ``cursor``, except those ``exclude_src`` sent."""
        high = await self.high_seq()
        async with self._r.execute(
            "SELECT collection, row_id, field, value, hlc, origin, seq FROM changes "
            "WHERE seq > ? AND src != ? ORDER BY seq LIMIT ?",
            (cursor, exclude_src, limit),
        ) as cur:
            rows = await cur.fetchall()
        raw = msgspec.Raw
        changes = [Change(c, r, f, raw(v), h, o) for c, r, f, v, h, o, _ in rows]
        if len(rows) == limit:
            return Page(changes, rows[-1][6], high, True)
        last = rows[-1][6] if rows else cursor
        return Page(changes, max(high, last, cursor), max(high, last), False)

    async def pending_count(self, cursor: int, *, exclude_src: str) -> int:
        async with self._r.execute(
            "SELECT count(*) FROM changes WHERE seq > ? AND src != ?", (cursor, exclude_src)
        ) as cur:
            (n,) = await cur.fetchone()  # type: ignore[misc]
        return int(n)

    # ------------------------------------------------------------ links

    async def link(self, peer: str) -> LinkState | None:
        async with self._r.execute(
            f"SELECT {', '.join(_LINK_COLUMNS)} FROM links WHERE peer = ?", (peer,)
        ) as cur:
            row = await cur.fetchone()
        return None if row is None else LinkState(**dict(zip(_LINK_COLUMNS, row)))

    async def links(self) -> list[LinkState]:
        async with self._r.execute(f"SELECT {', '.join(_LINK_COLUMNS)} FROM links ORDER BY peer") as cur:
            rows = await cur.fetchall()
        return [LinkState(**dict(zip(_LINK_COLUMNS, row))) for row in rows]

    async def ensure_link(self, peer: str, direction: str) -> LinkState:
        await self._w.execute(
            "INSERT INTO links (peer, direction) VALUES (?, ?) ON CONFLICT (peer) DO NOTHING",
            (peer, direction),
        )
        link = await self.link(peer)
        assert link is not None
        return link

    async def reset_peer(self, peer: str, peer_store_id: str) -> None:
        """The peer is a new store: forget what it acknowledged and what we pulled from it."""
        await self._w.execute(
            "UPDATE links SET peer_store_id = ?, acked_through = 0, pull_cursor = 0, served_cursor = 0 "
            "WHERE peer = ?",
            (peer_store_id, peer),
        )

    async def record_push_ack(self, peer: str, *, cursor: int, sent: int) -> None:
        await self._w.execute(
            "UPDATE links SET push_cursor = ?, last_ok_ms = ?, last_error = NULL, "
            "changes_out = changes_out + ? WHERE peer = ?",
            (cursor, self.clock.now_ms(), sent, peer),
        )

    async def set_push_cursor(self, peer: str, cursor: int) -> None:
        await self._w.execute("UPDATE links SET push_cursor = ? WHERE peer = ?", (cursor, peer))

    async def record_served(self, peer: str, *, cursor: int, sent: int) -> None:
        """Note a page served to ``peer`` up to ``cursor`` (for conflict counting and status)."""
        await self._w.execute(
            "UPDATE links SET changes_out = changes_out + ?, last_ok_ms = ?, "
            "served_cursor = max(served_cursor, ?) WHERE peer = ?",
            (sent, self.clock.now_ms(), cursor, peer),
        )

    async def record_link_error(self, peer: str, error: str) -> None:
        await self._w.execute(
            "UPDATE links SET last_error = ?, last_error_ms = ? WHERE peer = ?",
            (error[:500], self.clock.now_ms(), peer),
        )

    # ------------------------------------------------------------ node registry

    async def node(self, node_id: str) -> NodeRecord | None:
        async with self._r.execute(
            "SELECT node_id, parent, role, enrolled_ms FROM nodes WHERE node_id = ?", (node_id,)
        ) as cur:
            row = await cur.fetchone()
        return None if row is None else NodeRecord(*row)

    async def descendants(self, node_id: str) -> set[str]:
        async with self._r.execute(
            "WITH RECURSIVE below(id) AS (SELECT node_id FROM nodes WHERE parent = ? "
            "UNION SELECT n.node_id FROM nodes n JOIN below b ON n.parent = b.id) SELECT id FROM below",
            (node_id,),
        ) as cur:
            return {row[0] for row in await cur.fetchall()}

    async def enroll(self, node_id: str, *, parent: str | None, role: str) -> None:
        """Register a node (idempotent; updates its parent and role)."""
        await self._w.execute(
            "INSERT INTO nodes (node_id, parent, role, enrolled_ms) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (node_id) DO UPDATE SET parent = excluded.parent, role = excluded.role",
            (node_id, parent, role, self.clock.now_ms()),
        )

    # ------------------------------------------------------------ reading rows

    async def read_row(self, collection: str, row_id: str) -> dict[str, Any] | None:
        """The materialized row (None if no field of it is stored)."""
        spec = COLLECTIONS[collection]
        async with self._r.execute(f"SELECT * FROM {spec.name} WHERE row_id = ?", (row_id,)) as cur:
            row = await cur.fetchone()
            if row is None:
                return None
            names = [d[0] for d in cur.description]
        out = dict(zip(names, row))
        for f in spec.fields.values():
            if f.merge == "add_wins_set":
                out[f.name] = json.loads(out[f.name])
            elif f.sql_type == "INTEGER" and isinstance(f.default, bool):
                out[f.name] = bool(out[f.name])
        return out

    async def row_ids(self, collection: str, *, limit: int = 1000, after: str = "") -> list[str]:
        spec = COLLECTIONS[collection]
        async with self._r.execute(
            f"SELECT row_id FROM {spec.name} WHERE row_id > ? ORDER BY row_id LIMIT ?", (after, limit)
        ) as cur:
            return [r[0] for r in await cur.fetchall()]

    async def digest(self) -> str:
        """SHA-256 over every field state in key order: equal on converged replicas."""
        h = hashlib.sha256()
        enc = msgspec.msgpack.Encoder()
        async with self._r.execute(
            "SELECT collection, row_id, field, value, hlc, origin FROM changes "
            "ORDER BY collection, row_id, field"
        ) as cur:
            while rows := await cur.fetchmany(10_000):
                for row in rows:
                    h.update(enc.encode(row))
        return h.hexdigest()

    async def counts(self) -> dict[str, int]:
        """Rows per collection and field states in all."""
        out: dict[str, int] = {}
        for name in COLLECTIONS:
            async with self._r.execute(f"SELECT count(*) FROM {name}") as cur:
                (out[name],) = await cur.fetchone()  # type: ignore[misc]
        async with self._r.execute("SELECT count(*) FROM changes") as cur:
            (out["field_states"],) = await cur.fetchone()  # type: ignore[misc]
        return out


async def _read_meta(conn: aiosqlite.Connection) -> dict[str, Any]:
    async with conn.execute("SELECT key, value FROM meta") as cur:
        return dict(await cur.fetchall())


def wall_clock_ms() -> int:
    """The edge's wall clock, for ``Clock(now_ms=wall_clock_ms)``."""
    return time.time_ns() // 1_000_000
