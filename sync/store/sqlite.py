"""The SQLite replica store (aiosqlite, WAL), one row per entity.

One file per node. Each collection's table holds a row per entity with its
materialized columns and ``_state``, the merge state of every field (see
`sync.store.ddl`). Applying a batch loads the states of the rows it touches,
merges field by field in Python (`sync.merge`), and upserts each changed row
once, all in one ``BEGIN IMMEDIATE`` transaction together with the link cursor
it advances: a crash at any point leaves either the whole batch and its cursor or
neither. ``synchronous=FULL`` makes a committed (and so acknowledged) batch
survive power loss as well as ``kill -9``.

Each row write in a transaction takes the next local sequence number; the row's
changed fields carry it and ``_seq`` is the greatest. ``meta.seq`` only grows,
even when rows are later purged, so a cursor never meets a reused number. It is
read inside each write transaction, so two processes on one file (``outpost
serve`` and ``outpost sync``) still number correctly; the HLC's last stamp is
kept beside it for the same reason.

Two connections: a writer, and a reader for pulls, digests and status, so that
serving a pull never waits behind a long apply (WAL gives readers a snapshot).
Each has a lock: the requests of one node share the store, and one coroutine's
transaction must never take in another's statements.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import heapq
import json
import math
import os
import sqlite3
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite
import msgspec

from sync.audit import AuditDraft
from sync.changes import Change, RefusedChange, RowDrop
from sync.edits import Edit, edit_state, spec_of
from sync.hlc import Clock
from sync.ids import new_ulid
from sync.merge import Applied, FieldState, Refused, materialize, merge_for
from sync.protocol import Incoming
from sync.schema import COLLECTIONS, PARENTS, SCHEMA_VERSION, FieldSpec
from sync.scope import PeerScope, RowFilter, parent_id
from sync.store import ApplyReport, DeviceRecord, PurgeHook, LinkState, NodeRecord, Page, RefreshUse, SessionRecord
from sync.store.ddl import PRIORITY, PRIORITY_INDEXES, WORK_INDEXES, column_index, column_value, member_columns
from sync.store.errors import (
    StoreBusyError,
    StoreExistsError,
    StoreMissingError,
    StoreOwnerError,
    StoreVersionError,
)
from sync.store.audit_log import AuditLogStore
from sync.store.row_cache import RowCache
from sync.store.rows import materialize as _materialize
from sync.store.rows import projection as _projection
from sync.store.rows import where as _where
from sync.store.snapshot import Snapshot, inline_reader, is_busy, on_thread, read_in_transaction
from sync.store.locks import reads as _reads
from sync.store.locks import writes as _writes
from sync.store.migrations import LAYOUT_VERSION, add_missing_columns, migrate

_LINK_COLUMNS = tuple(LinkState.__struct_fields__)
_NODE_COLUMNS = ", ".join(NodeRecord.__struct_fields__)
_SESSION_COLUMNS = SessionRecord.__struct_fields__
_DEVICE_COLUMNS = DeviceRecord.__struct_fields__

#: one field's stored state: (canonical value, hlc, origin, local seq, source peer)
Entry = tuple[bytes, int, str, int, str]
Doc = dict[str, Entry]
_RowKey = tuple[str, str]

_decode_doc = msgspec.msgpack.Decoder(Doc).decode
#: a doc with its entries undecoded, and one entry's value (undecoded) and stamp:
#: reading one field's stamp costs little more than finding it
_decode_raw_doc = msgspec.msgpack.Decoder(dict[str, msgspec.Raw]).decode
_decode_stamp = msgspec.msgpack.Decoder(tuple[msgspec.Raw, int, str, int, str]).decode
_encode_doc = msgspec.msgpack.Encoder().encode

#: merge types whose column differs from the wire value
_MATERIALIZED = frozenset({"add_wins_set", "counter"})
#: row ids per `json_each` lookup of stored states
_LOOKUP_CHUNK = 2_000
#: rows per read of priority states (`priority_after`)
_PRIORITY_CHUNK = 512
#: rows the shared reads keep per projection (`sync.store.row_cache`): about 1.3 KB each, so
#: some 26 MB each (the inbox has two: tasks, customers); a site's 200 agents' inbox pages are
#: 10,000 tasks and some 8,000 customers
SHARED_ROWS_KEPT = 20_000
#: the collections whose rows have children (`sync.schema.PARENTS`)
_HAS_CHILDREN = frozenset(parent for parent, _ in PARENTS.values())
_T = TypeVar("_T")
#: a tombstone's canonical value when the row is deleted
_TRUE = msgspec.msgpack.encode(True)


def _tombstoned(doc: Doc) -> bool:
    entry = doc.get("deleted")
    return entry is not None and entry[0] == _TRUE


async def _connect(path: str) -> aiosqlite.Connection:
    conn = await aiosqlite.connect(path, isolation_level=None)
    await conn.execute("PRAGMA journal_mode = WAL")
    await conn.execute("PRAGMA synchronous = FULL")
    await conn.execute("PRAGMA busy_timeout = 10000")
    await conn.execute("PRAGMA secure_delete = ON")
    await conn.execute("PRAGMA cache_size = -32768")  # 32 MiB
    await conn.execute("PRAGMA temp_store = MEMORY")
    return conn


class _Batch:
    """The rows one write transaction touches: their docs and what changed in them."""

    __slots__ = ("docs", "dirty", "owners", "retired")

    def __init__(self, docs: dict[_RowKey, Doc]) -> None:
        self.docs = docs
        #: secret values (PII, wrapped keys, blind indexes) this batch replaced or shredded
        self.retired = 0
        #: row -> {column: value}
        self.dirty: dict[_RowKey, dict[str, Any]] = {}
        #: row -> its changed Struct-valued fields (their columns are their members)
        self.owners: defaultdict[_RowKey, set[str]] = defaultdict(set)

    def changed_fields(self, key: _RowKey, cols: dict[str, Any]) -> Iterable[str]:
        """The fields of ``key`` this batch changed (names of shredded ones too)."""
        owners = self.owners.get(key)
        return cols if owners is None else (*cols, *owners)


class SqliteStore(AuditLogStore):
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
        self._wlock = asyncio.Lock()
        self._rlock = asyncio.Lock()
        self.node_id = node_id
        self.store_id = store_id
        self.role = role
        self.clock = clock
        #: secret values replaced or shredded since the store opened, here or by
        #: sync: until the WAL is checkpointed, its frames may still hold the old ones
        self.retired_secrets = 0
        #: moves on after every commit here that changed a user or campaign row (a
        #: team, a partner's contract), a session or a node's keys (see `auth_mark`)
        self.auth_generation = 0
        #: the writer's ``data_version`` as last read, when that reading began
        #: (`time.monotonic`), and the reading under way (`auth_mark`)
        self._foreign_version = 0
        self._foreign_read_at = -math.inf
        self._foreign_read: asyncio.Future[int] | None = None
        #: `snapshot`'s connection, made on first use on the event loop's thread
        self._inline: sqlite3.Connection | None = None
        #: the rows its shared reads made (`Snapshot.shared_rows`)
        self.row_cache = RowCache(SHARED_ROWS_KEPT)
        self._audit_init()

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
        if Path(path).exists() and Path(path).stat().st_size > 0:
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
        if not Path(path).exists():
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
            for statement in (*PRIORITY_INDEXES, *WORK_INDEXES):
                await writer.execute(statement)
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
        await self._audit_drain()
        if self._inline is not None:
            self._inline.close()
        await self._r.close()
        await self._w.close()

    # ------------------------------------------------------------ writing

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[None]:
        """One immediate transaction on the writer (the caller holds the write lock)."""
        await self._w.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            await self._w.execute("ROLLBACK")
            raise
        await self._w.execute("COMMIT")

    @_writes
    async def write_local(self, edits: list[Edit], *, audit: AuditDraft | None = None) -> list[Change]:
        """Apply edits made at this node under one new stamp; returns the changes stored.

        ``audit``: the audit entry recording the write, appended to this node's
        chain in the same transaction (no write without its entry, and no entry
        for a write that did not happen). Raises `InvalidEditError` (nothing is
        written) when any edit is invalid.
        """
        if not edits and audit is None:
            return []
        specs = [spec_of(e) for e in edits]
        changes: list[Change] = []
        await self._w.execute("BEGIN IMMEDIATE")
        try:
            seq, hlc_high = await self._seq_and_hlc()
            self.clock.last = max(self.clock.last, hlc_high)
            stamp = self.clock.send()
            batch = await self._load([(s.collection, e.row_id) for s, e in zip(specs, edits)])
            self._stage_edits(batch, specs, edits, stamp)
            self._shred(batch)
            seq = await self._write(batch, seq)
            await self._set_seq_and_hlc(seq, stamp)
            if audit is not None:
                await self._chain_audit([audit])
            await self._w.execute("COMMIT")
        except BaseException:
            await self._w.execute("ROLLBACK")
            raise
        self.retired_secrets += batch.retired
        if any(key[0] in _AUTH_COLLECTIONS for key in batch.dirty):
            self.auth_generation += 1
        for (collection, row_id), cols in batch.dirty.items():
            doc = batch.docs[(collection, row_id)]
            for name in batch.changed_fields((collection, row_id), cols):
                if name not in doc:
                    continue  # shredded by the row's tombstone, or a member column
                raw, hlc, origin, _, _ = doc[name]
                changes.append(Change(collection, row_id, name, msgspec.Raw(raw), hlc, origin))  # type: ignore[arg-type]
        return changes

    async def apply_pulled(
        self, incoming: list[Incoming], *, peer: str, peer_store_id: str, since: int, cursor: int,
        drops: list[RowDrop] | None = None, scope: str = "", on_purge: PurgeHook | None = None,
    ) -> ApplyReport:
        """Merge a page pulled from ``peer`` and move the pull cursor, in one transaction.

        Local states not yet pushed (numbered after the push ``since``) that the
        page meets with another value count as conflicts. The page's ``drops``
        go first: a purged row is deleted with its key records, and ``on_purge``
        gives the edits that record it (a signed receipt), stored in the same
        transaction; a reset row keeps only its states not yet pushed.
        ``scope`` is the page's scope fingerprint, kept with the cursor.
        """
        link = await self.link(peer)
        unseen_after = link.push_since if link is not None else 0

        async def advance() -> None:
            await self._w.execute(
                "UPDATE links SET pull_since = ?, pull_cursor = ?, peer_store_id = ?, last_ok_ms = ?, "
                "last_error = NULL, changes_in = changes_in + ?, pull_scope = ? WHERE peer = ?",
                (since, cursor, peer_store_id, self.clock.now_ms(), len(incoming), scope, peer),
            )

        return await self._apply(incoming, src=peer, link_update=advance, unseen_after=unseen_after,
                                 drops=drops or [], on_purge=on_purge)

    async def apply_pushed(
        self,
        incoming: list[Incoming],
        *,
        peer: str,
        peer_store_id: str,
        acked_since: int,
        acked_through: int,
        new_store: bool = False,
        scope: PeerScope | None = None,
        audit: Callable[[ApplyReport], AuditDraft | None] | None = None,
    ) -> ApplyReport:
        """Merge a push from ``peer`` and record it as acknowledged, in one transaction
        (with the audit entry ``audit`` makes of the report, if any).

        States stored here after the last complete run served to ``peer`` are ones
        it had not seen: meeting another value there counts as a conflict.
        ``new_store``: the push comes from a store this link has not seen (first
        contact, or the peer was rebuilt); the link forgets the old one.
        ``scope``: the peer's; its changes to governed rows outside it, or to
        fields it may not write, are refused, and the peer owes a drop of the row
        (`owed_drops`) so it converges back.
        """
        link = await self.link(peer)
        unseen_after = link.served_cursor if link is not None and not new_store else 0

        async def acknowledge() -> None:
            if new_store:
                await self._w.execute(
                    "UPDATE links SET pull_since = 0, pull_cursor = 0, served_cursor = 0 WHERE peer = ?", (peer,)
                )
                for table in ("peer_rows", "peer_drops"):  # a new store holds nothing yet
                    await self._w.execute(f"DELETE FROM {table} WHERE peer = ?", (peer,))
            await self._w.execute(
                "UPDATE links SET acked_since = ?, acked_through = ?, peer_store_id = ?, last_ok_ms = ?, "
                "last_error = NULL, changes_in = changes_in + ? WHERE peer = ?",
                (acked_since, acked_through, peer_store_id, self.clock.now_ms(), len(incoming), peer),
            )

        return await self._apply(incoming, src=peer, link_update=acknowledge, unseen_after=unseen_after,
                                 scope=scope, audit=audit)

    @_writes
    async def _apply(
        self,
        incoming: list[Incoming],
        *,
        src: str,
        link_update: Callable[[], Any],
        unseen_after: int,
        drops: list[RowDrop] = [],  # noqa: B006 - read only
        on_purge: PurgeHook | None = None,
        scope: PeerScope | None = None,
        audit: Callable[[ApplyReport], AuditDraft | None] | None = None,
    ) -> ApplyReport:
        """Merge ``incoming`` field by field and store the changed rows, in one
        transaction; ``audit`` turns the report into the entry committed with it."""
        applied = superseded = conflicts = 0
        refused: list[RefusedChange] = []
        purged = 0
        await self._w.execute("BEGIN IMMEDIATE")
        try:
            seq, hlc_high = await self._seq_and_hlc()
            batch = await self._load([(i.spec.collection, i.row_id) for i in incoming]
                                     + [(d.collection, d.row_id) for d in drops])
            docs = batch.docs
            if scope is not None:  # a child row is screened by its parent
                await self._load_parents(batch, incoming)
            receipt_rows = await self._drop_rows(batch, drops, keep_after=unseen_after) if drops else None
            screen = _Screen(scope, incoming, docs, src) if scope is not None else None
            counted: set[tuple[str, str, str]] = set()
            max_hlc = hlc_high
            stage = self._stage
            for inc in incoming:
                spec = inc.spec
                key = (spec.collection, inc.row_id)
                if screen is not None and inc.index in screen.refused:
                    refused.append(RefusedChange(inc.index, screen.refused[inc.index]))
                    continue
                state = inc.state
                doc = docs[key]
                if spec.secret and _tombstoned(doc):
                    superseded += 1  # a deleted row holds no secrets
                    continue
                entry = doc.get(spec.name)
                if entry is None:  # first state of this field here: nothing to merge
                    stage(batch, key, spec, state, src, inc.value)
                    applied += 1
                    if state.hlc > max_hlc:
                        max_hlc = state.hlc
                    continue
                if entry[0] != state.raw and entry[3] > unseen_after and entry[4] != src:
                    ckey = (key[0], key[1], spec.name)
                    if ckey not in counted:
                        counted.add(ckey)
                        conflicts += 1
                outcome = merge_for(spec)(FieldState(entry[0], entry[1], entry[2]), state)
                if type(outcome) is Applied:
                    new = outcome.state
                    if new is state or new == state:
                        stage(batch, key, spec, new, src, inc.value)
                    else:
                        stage(batch, key, spec, new, "", _UNDECODED)
                    applied += 1
                    if spec.secret:
                        batch.retired += 1
                    if state.hlc > max_hlc:
                        max_hlc = state.hlc
                elif type(outcome) is Refused:
                    refused.append(RefusedChange(inc.index, outcome.reason))
                else:
                    superseded += 1
            if screen is not None:
                undone = screen.recheck(batch)
                if undone:
                    applied -= len(undone)
                    refused = [r for r in refused if r.index not in undone]
                    refused += [RefusedChange(i, "out_of_scope") for i in sorted(undone)]
                    refused.sort(key=lambda r: r.index)
                await self._owe_drops(batch, src, screen)
            if receipt_rows and receipt_rows[0] and on_purge is not None:
                purged = len(receipt_rows[0])
                self.clock.last = max(self.clock.last, max_hlc)
                edits = on_purge(*receipt_rows)
                for edit in edits:
                    docs.setdefault((edit.collection, edit.row_id), {})
                self._stage_edits(batch, [spec_of(e) for e in edits], edits, self.clock.send())
            self._shred(batch)
            seq = await self._write(batch, seq)
            await self._set_seq_and_hlc(seq, max(max_hlc, self.clock.last))
            await link_update()
            report = ApplyReport(applied, superseded, refused, seq, conflicts, purged)
            draft = None if audit is None else audit(report)
            if draft is not None:
                await self._chain_audit([draft])
            await self._w.execute("COMMIT")
        except BaseException:
            await self._w.execute("ROLLBACK")
            raise
        self.retired_secrets += batch.retired
        if any(key[0] in _AUTH_COLLECTIONS for key in batch.dirty) or any(
                d.collection in _AUTH_COLLECTIONS for d in drops):
            self.auth_generation += 1
        # stamps were drift-checked before the batch; only keep the clock ahead of them
        self.clock.last = max(self.clock.last, max_hlc)
        return report

    async def _load_parents(self, batch: _Batch, incoming: list[Incoming]) -> None:
        """Add to ``batch`` the stored docs of the parents of the child rows in
        ``incoming`` (named by the stored row, or by the push for a new one)."""
        wanted: set[_RowKey] = set()
        for inc in incoming:
            link = PARENTS.get(inc.spec.collection)
            if link is None:
                continue
            parent = parent_id(inc.spec.collection, batch.docs[(inc.spec.collection, inc.row_id)])
            if parent is None and inc.spec.name == link[1]:
                value = msgspec.msgpack.decode(inc.state.raw)
                parent = value if isinstance(value, str) else None
            if parent is not None and (link[0], parent) not in batch.docs:
                wanted.add((link[0], parent))
        if wanted:
            batch.docs.update((await self._load(sorted(wanted))).docs)

    async def _drop_rows(self, batch: _Batch, drops: list[RowDrop], *, keep_after: int) -> tuple[list[str], int]:
        """Carry out an upstream's drops: delete purged rows (a customer with its key
        records), and strip reset rows to their states numbered after
        ``keep_after`` (not yet pushed). Returns the purged rows
        (``collection/row_id``) and how many key records went with them."""
        purged: list[str] = []
        keys = 0
        for drop in drops:
            key = (drop.collection, drop.row_id)
            doc = batch.docs.get(key) or {}
            if not doc:
                if drop.kind == "purge":
                    purged.append(f"{drop.collection}/{drop.row_id}")  # held nothing: nothing to keep either
                continue
            await self._w.execute(f"DELETE FROM {drop.collection} WHERE row_id = ?", (drop.row_id,))
            batch.retired += sum(1 for f in COLLECTIONS[drop.collection].secret_fields if f.name in doc)
            batch.docs[key] = {}
            batch.dirty.pop(key, None)
            batch.owners.pop(key, None)
            if drop.kind == "purge":
                purged.append(f"{drop.collection}/{drop.row_id}")
                if drop.collection == "customers":
                    cur = await self._w.execute("DELETE FROM keys WHERE customer_id = ?", (drop.row_id,))
                    keys += max(cur.rowcount, 0)
                    batch.retired += max(cur.rowcount, 0)
                continue
            fields = COLLECTIONS[drop.collection].fields
            for name, entry in doc.items():
                if entry[3] > keep_after:  # a local write the upstream has not seen: keep it
                    self._stage(batch, key, fields[name], FieldState(entry[0], entry[1], entry[2]), entry[4],
                                _UNDECODED)
        return purged, keys

    async def _owe_drops(self, batch: _Batch, peer: str, screen: _Screen) -> None:
        """Record what a screened push leaves the peer owing and holding: a drop for
        each row with a refused change (the row is sent whole again after a reset:
        numbering it anew makes the next pull visit it), and the rows it made."""
        for key, kind in screen.owed.items():
            await self._w.execute(
                "INSERT INTO peer_drops (peer, collection, row_id, kind) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (peer, collection, row_id) DO UPDATE SET kind = excluded.kind",
                (peer, key[0], key[1], kind),
            )
            await self._w.execute(
                "DELETE FROM peer_rows WHERE peer = ? AND collection = ? AND row_id = ?", (peer, *key)
            )
            if kind == "reset" and batch.docs[key]:
                batch.dirty.setdefault(key, {})
        made = [key for key in screen.new_rows if key not in screen.owed and batch.docs[key]]
        await self._w.executemany(
            "INSERT OR IGNORE INTO peer_rows (peer, collection, row_id) VALUES (?, ?, ?)",
            [(peer, *key) for key in made],
        )

    def _stage_edits(self, batch: _Batch, specs: list[FieldSpec], edits: list[Edit], stamp: int) -> None:
        """Stage edits made here under ``stamp`` (their rows are loaded in ``batch``)."""
        for spec, edit in zip(specs, edits):
            key = (spec.collection, edit.row_id)
            if spec.secret and _tombstoned(batch.docs[key]):
                continue  # a deleted row holds no secrets
            entry = batch.docs[key].get(spec.name)
            cur = None if entry is None else FieldState(entry[0], entry[1], entry[2])
            new = edit_state(spec, cur, edit, stamp, self.node_id)
            if new is not cur:
                self._stage(batch, key, spec, new, "", _UNDECODED)
                if spec.secret and cur is not None:
                    batch.retired += 1

    @staticmethod
    def _stage(batch: _Batch, key: _RowKey, spec: FieldSpec, state: FieldState, src: str, value: Any) -> None:
        """Put a field's new state in its row's doc (seq 0 until `_write` numbers the row)."""
        batch.docs[key][spec.name] = (state.raw, state.hlc, state.origin, 0, src)
        if spec.members:
            cols = batch.dirty.setdefault(key, {})
            cols.update(member_columns(spec, materialize(spec, state.raw)))
            batch.owners[key].add(spec.name)
            return
        if value is _UNDECODED or spec.merge in _MATERIALIZED or type(value) is list:
            value = column_value(spec, materialize(spec, state.raw))
        elif value is True or value is False:
            value = int(value)
        cols = batch.dirty.get(key)
        if cols is None:
            batch.dirty[key] = {spec.name: value}
        else:
            cols[spec.name] = value

    @staticmethod
    def _shred(batch: _Batch) -> None:
        """Drop the secret fields of rows this batch tombstoned (their columns
        become NULL; secure_delete zeroes the freed bytes)."""
        for key, cols in batch.dirty.items():
            if "deleted" not in cols:
                continue
            secret = COLLECTIONS[key[0]].secret_fields
            doc = batch.docs[key]
            if secret and _tombstoned(doc):
                for f in secret:
                    if doc.pop(f.name, None) is not None:
                        cols.update(dict.fromkeys(f.members or (f.name,)))
                        batch.retired += 1

    async def _load(self, rows: list[_RowKey]) -> _Batch:
        """The stored docs of these rows (empty docs for rows not stored yet)."""
        by_collection: dict[str, set[str]] = defaultdict(set)
        for collection, row_id in rows:
            by_collection[collection].add(row_id)
        docs: dict[_RowKey, Doc] = {}
        for collection, row_ids in by_collection.items():
            ids = list(row_ids)
            for i in range(0, len(ids), _LOOKUP_CHUNK):
                async with self._w.execute(
                    f"SELECT row_id, _state FROM {collection} "  # collection names come from the schema
                    "WHERE row_id IN (SELECT value FROM json_each(?))",
                    (json.dumps(ids[i : i + _LOOKUP_CHUNK]),),
                ) as cur:
                    for row_id, state in await cur.fetchall():
                        docs[(collection, row_id)] = _decode_doc(state)
            for row_id in row_ids:
                docs.setdefault((collection, row_id), {})
        return _Batch(docs)

    async def _write(self, batch: _Batch, seq: int) -> int:
        """Number each changed row (after ``seq``) and upsert it; returns the last seq used.

        Rows are grouped by the set of columns that changed, one statement per group.
        """
        shapes: dict[tuple[str, tuple[str, ...]], list[tuple[Any, ...]]] = defaultdict(list)
        docs = batch.docs
        for key, cols in batch.dirty.items():
            seq += 1
            doc = docs[key]
            for name in batch.changed_fields(key, cols):
                entry = doc.get(name)
                if entry is not None:  # None: shredded or a member column
                    doc[name] = (entry[0], entry[1], entry[2], seq, entry[4])
            shapes[(key[0], tuple(cols))].append((key[1], *cols.values(), seq, _encode_doc(doc)))
        for (collection, names), params in shapes.items():
            if not names:  # renumbered only (a row a peer gets whole again)
                await self._w.executemany(
                    f"UPDATE {collection} SET _seq = ?, _state = ? WHERE row_id = ?",
                    [(p[1], p[2], p[0]) for p in params],
                )
                continue
            placeholders = ", ".join("?" * (len(names) + 3))
            updates = ", ".join(f"{n} = excluded.{n}" for n in (*names, "_seq", "_state"))
            await self._w.executemany(
                f"INSERT INTO {collection} (row_id, {', '.join(names)}, _seq, _state) VALUES ({placeholders}) "
                f"ON CONFLICT (row_id) DO UPDATE SET {updates}",
                params,
            )
        return seq

    async def _seq_and_hlc(self) -> tuple[int, int]:
        async with self._w.execute("SELECT key, value FROM meta WHERE key IN ('seq', 'hlc')") as cur:
            meta = dict(await cur.fetchall())
        return int(meta["seq"]), int(meta["hlc"])

    async def _set_seq_and_hlc(self, seq: int, hlc: int) -> None:
        await self._w.executemany(
            "UPDATE meta SET value = max(value, ?) WHERE key = ?", [(seq, "seq"), (hlc, "hlc")]
        )

    @_writes
    async def raise_seq(self, seq: int) -> None:
        """Number future writes after ``seq``: a peer acknowledged numbers this copy
        never reached (it was restored from an older backup)."""
        await self._w.execute("UPDATE meta SET value = max(value, ?) WHERE key = 'seq'", (seq,))

    # ------------------------------------------------------------ reading changes

    @_reads
    async def high_seq(self) -> int:
        """As `Snapshot.high_seq`, in one trip."""
        return await on_thread(self._r, lambda conn: Snapshot(conn).high_seq())

    @_reads
    async def changes_after(
        self, since: int, cursor: int, *, limit: int, exclude_src: str, admit: RowFilter | None = None,
        scope: PeerScope | None = None, reshape: bool = False, assume_held: bool = False,
    ) -> Page:
        """Field states numbered after ``since`` in rows numbered after ``cursor``.

        Reads rows in ``_seq`` order across collections, in growing chunks, and
        stops at a row boundary once ``limit`` changes (and drops) are gathered or
        the rows run out. States that ``exclude_src`` delivered are left out (it
        has them), so rows holding nothing for it cost a read, not a page; so are
        rows ``admit`` (or ``scope``) refuses. One read snapshot.

        With a ``scope`` that governs a collection, its rows are weighed against
        what ``exclude_src`` (the peer) holds (``peer_rows``): a row in scope that
        it holds gets its new states, one it does not hold is sent whole (of the
        fields present at the peer), and one out of scope that it holds is
        purged (`Page.drops`). `Page.entered` and `Page.left` say which, for
        `confirm_served` once the peer has stored the page. ``reshape`` (the
        peer's scope changed, so the fields present there may have): a held row
        is reset at the peer and sent whole, so a field no longer present goes.
        ``assume_held``: the peer may hold any row (it synced before scopes were
        recorded): every row outside its scope is purged there.

        A child row (`sync.schema.PARENTS`: a customer's consents) is weighed by
        its parent row, and follows it: when a page visits a parent, its children
        numbered before the page (which the page does not visit) are sent whole
        to a peer that does not hold them if the parent is in scope, and purged
        at a peer that holds them if it is not.
        """
        changes: list[Change] = []
        append = changes.append
        raw = msgspec.Raw
        drops: list[RowDrop] = []
        entered: list[tuple[str, str]] = []
        left: list[tuple[str, str]] = []
        if scope is not None and admit is None:
            admit = scope.admits
        governs = {c: scope is not None and scope.governs(c) for c in COLLECTIONS}
        last = pos = cursor
        chunk = max(64, limit // 10)  # rows; a customer row carries about ten fields
        await self._r.execute("BEGIN")
        try:
            async with self._r.execute("SELECT value FROM meta WHERE key = 'seq'") as cur:
                (high,) = await cur.fetchone()  # type: ignore[misc]
            if any(governs.values()):
                async with self._r.execute("SELECT EXISTS (SELECT 1 FROM peer_rows WHERE peer = ?)",
                                           (exclude_src,)) as cur:
                    (holds_any,) = await cur.fetchone()  # type: ignore[misc]
            else:
                holds_any = False
            while True:
                streams = []
                bound = None  # rows beyond it may hide behind a truncated collection
                held: set[tuple[str, str]] = set()
                parents: dict[tuple[str, str], Doc] = {}
                for collection in COLLECTIONS:
                    async with self._r.execute(
                        f"SELECT _seq, row_id, _state FROM {collection} WHERE _seq > ? ORDER BY _seq LIMIT ?",
                        (pos, chunk),
                    ) as cur:
                        rows = await cur.fetchall()
                    if len(rows) == chunk:
                        bound = rows[-1][0] if bound is None else min(bound, rows[-1][0])
                    streams.append([(s, collection, r, st) for s, r, st in rows])
                    if governs[collection] and rows and holds_any:  # a first pull holds nothing: no lookups
                        held.update(await self._held(exclude_src, collection, [r for _, r, _ in rows]))
                    if governs[collection] and rows and collection in PARENTS:
                        parents.update(await self._parent_docs(collection, [st for _, _, st in rows]))
                visited: list[tuple[str, str, bool]] = []  # parents: (collection, row id, in scope)
                for row_seq, collection, row_id, state in heapq.merge(*streams):
                    if bound is not None and row_seq > bound:
                        break
                    if len(changes) + len(drops) >= limit:
                        await self._follow_parents(visited, cursor, scope, exclude_src, holds_any=holds_any,
                                                   assume_held=assume_held, changes=changes, drops=drops,
                                                   entered=entered, left=left)
                        return Page(changes, last, high, True, drops, entered, left)
                    last = row_seq
                    doc = _decode_doc(state)
                    if governs[collection]:
                        assert scope is not None
                        key = (collection, row_id)
                        if collection in PARENTS:
                            parent = parent_id(collection, doc)
                            admitted = scope.admits_child(
                                collection, None if parent is None else parents.get((PARENTS[collection][0], parent)))
                        else:
                            admitted = scope.admits_row(collection, doc)
                            if cursor and collection in _HAS_CHILDREN:
                                visited.append((collection, row_id, admitted))
                        if not admitted:
                            if assume_held or key in held:
                                drops.append(RowDrop(collection, row_id, "purge"))
                                left.append(key)
                            continue
                        present = scope.fields.get(collection, frozenset())
                        whole = reshape or key not in held
                        if reshape and key in held:
                            drops.append(RowDrop(collection, row_id, "reset"))
                        if whole:
                            entered.append(key)
                        for name, (value, hlc, origin, fseq, src) in doc.items():
                            if name in present and (whole or (fseq > since and src != exclude_src)):
                                append(Change(collection, row_id, name, raw(value), hlc, origin))  # type: ignore[arg-type]
                        continue
                    if admit is not None and not admit(collection, doc):
                        continue
                    for name, (value, hlc, origin, fseq, src) in doc.items():
                        if fseq > since and src != exclude_src:
                            append(Change(collection, row_id, name, raw(value), hlc, origin))  # type: ignore[arg-type]
                await self._follow_parents(visited, cursor, scope, exclude_src, holds_any=holds_any,
                                           assume_held=assume_held, changes=changes, drops=drops,
                                           entered=entered, left=left)
                if bound is None:
                    break
                pos = bound
                chunk = min(chunk * 2, max(limit, 64))
        finally:
            await self._r.execute("COMMIT")
        end = max(high, last, cursor)
        return Page(changes, end, end, False, drops, entered, left)

    @_reads
    async def priority_after(
        self, since: int, cursor: int, *, limit: int, exclude_src: str, admit: RowFilter | None = None,
        scope: PeerScope | None = None,
    ) -> Page:
        """The priority states (`sync.store.ddl.PRIORITY`: customers' suppression
        reasons, consent records) that a run at (``since``, ``cursor``) has yet to
        deliver: numbered after ``since``, in rows numbered after ``cursor`` (the
        run has read the rows up to it). They go ahead of the run's page; the run
        sends them again in their turn, which merging makes harmless.

        At most about ``limit`` changes, oldest first, whole rows; ``more`` says
        some were left for the run. One read snapshot. ``exclude_src``,
        ``admit`` and ``scope`` filter as in `changes_after`, with one rule more:
        a governed row goes ahead only to a peer that holds it (for a consent: its
        customer), since a row entering the peer's scope arrives whole with the
        run; a consent new to a peer that holds its customer is sent whole
        (`Page.entered`). The partial index `PRIORITY_INDEXES` keeps the read to
        the suppressed customers changed after ``cursor`` and the new consents.
        """
        changes: list[Change] = []
        entered: list[tuple[str, str]] = []
        raw = msgspec.Raw
        if scope is not None and admit is None:
            admit = scope.admits
        more = False
        await self._r.execute("BEGIN")
        try:
            async with self._r.execute("SELECT value FROM meta WHERE key = 'seq'") as cur:
                (high,) = await cur.fetchone()  # type: ignore[misc]
            for collection, (only, where) in PRIORITY.items():
                governed = scope is not None and scope.governs(collection)
                if governed:
                    async with self._r.execute("SELECT EXISTS (SELECT 1 FROM peer_rows WHERE peer = ?)",
                                               (exclude_src,)) as cur:
                        (holds_any,) = await cur.fetchone()  # type: ignore[misc]
                    if not holds_any:  # it holds nothing yet: every row arrives whole with the run
                        continue
                pos = cursor
                while not more:
                    async with self._r.execute(
                        f"SELECT _seq, row_id, _state FROM {collection} WHERE {where} AND _seq > ? "
                        "ORDER BY _seq LIMIT ?",
                        (pos, _PRIORITY_CHUNK),
                    ) as cur:
                        rows = await cur.fetchall()
                    if not rows:
                        break
                    pos = rows[-1][0]
                    held: set[tuple[str, str]] = set()
                    parents: dict[tuple[str, str], Doc] = {}
                    if governed:
                        held.update(await self._held(exclude_src, collection, [r for _, r, _ in rows]))
                        if collection in PARENTS:
                            parents = await self._parent_docs(collection, [st for _, _, st in rows])
                            held.update(await self._held(exclude_src, PARENTS[collection][0],
                                                         sorted({key[1] for key in parents})))
                    for _, row_id, state in rows:
                        if len(changes) >= limit:
                            more = True
                            break
                        doc = _decode_doc(state)
                        key = (collection, row_id)
                        whole = False
                        present: frozenset[str] | None = None
                        if governed:
                            assert scope is not None
                            if collection in PARENTS:
                                parent = parent_id(collection, doc)
                                pkey = (PARENTS[collection][0], parent or "")
                                if pkey not in held or not scope.admits_child(collection, parents.get(pkey)):
                                    continue
                                whole = key not in held
                            elif key not in held or not scope.admits_row(collection, doc):
                                continue
                            present = scope.fields.get(collection, frozenset())
                        elif admit is not None and not admit(collection, doc):
                            continue
                        if whole:
                            entered.append(key)
                        for name, (value, hlc, origin, fseq, src) in doc.items():
                            if (only is not None and name != only) or (present is not None and name not in present):
                                continue
                            if whole or (fseq > since and src != exclude_src):
                                changes.append(Change(collection, row_id, name, raw(value), hlc, origin))  # type: ignore[arg-type]
        finally:
            await self._r.execute("COMMIT")
        return Page(changes, cursor, max(high, cursor), more, [], entered, [])

    async def _parent_docs(self, collection: str, states: list[bytes]) -> dict[tuple[str, str], Doc]:
        """The stored docs of the parents of these child rows (reader connection, in
        its snapshot), by (parent collection, row id); parents not stored are absent."""
        parent = PARENTS[collection][0]
        ids = sorted({p for st in states if (p := parent_id(collection, _decode_doc(st))) is not None})
        out: dict[tuple[str, str], Doc] = {}
        for i in range(0, len(ids), _LOOKUP_CHUNK):
            async with self._r.execute(
                f"SELECT row_id, _state FROM {parent} WHERE row_id IN (SELECT value FROM json_each(?))",
                (json.dumps(ids[i : i + _LOOKUP_CHUNK]),),
            ) as cur:
                out.update(((parent, r), _decode_doc(st)) for r, st in await cur.fetchall())
        return out

    async def _follow_parents(
        self, visited: list[tuple[str, str, bool]], cursor: int, scope: PeerScope | None, peer: str, *,
        holds_any: bool, assume_held: bool, changes: list[Change], drops: list[RowDrop],
        entered: list[tuple[str, str]], left: list[tuple[str, str]],
    ) -> None:
        """Children numbered up to ``cursor`` (the page visits none of them) follow
        the ``visited`` parents (collection, row id, in the peer's scope): sent
        whole to the peer if it does not hold them and their parent is in scope,
        purged there if it holds them and their parent is not. A page started at
        0 visits every child itself: nothing to follow."""
        if not visited or not cursor or scope is None:
            return
        for child, (parent, field) in PARENTS.items():
            if not scope.governs(child):
                continue
            in_scope = {row_id: ok for c, row_id, ok in visited if c == parent}
            if not in_scope:
                continue
            rows: list[tuple[str, bytes, str]] = []
            ids = sorted(in_scope)
            for i in range(0, len(ids), _LOOKUP_CHUNK):
                async with self._r.execute(
                    f"SELECT row_id, _state, {field} FROM {child} "
                    f"WHERE {field} IN (SELECT value FROM json_each(?)) AND _seq <= ?",
                    (json.dumps(ids[i : i + _LOOKUP_CHUNK]), cursor),
                ) as cur:
                    rows.extend(await cur.fetchall())
            if not rows:
                continue
            held = set(await self._held(peer, child, [r for r, _, _ in rows])) if holds_any else set()
            present = scope.fields.get(child, frozenset())
            for row_id, state, owner in rows:
                key = (child, row_id)
                if in_scope[owner]:
                    if key in held:
                        continue
                    entered.append(key)
                    for name, (value, hlc, origin, _, _) in _decode_doc(state).items():
                        if name in present:
                            changes.append(Change(child, row_id, name, msgspec.Raw(value), hlc, origin))  # type: ignore[arg-type]
                elif assume_held or key in held:
                    drops.append(RowDrop(child, row_id, "purge"))
                    left.append(key)

    async def _held(self, peer: str, collection: str, row_ids: list[str]) -> list[tuple[str, str]]:
        """Which of ``row_ids`` the peer holds (reader connection, in its snapshot)."""
        out: list[tuple[str, str]] = []
        for i in range(0, len(row_ids), _LOOKUP_CHUNK):
            async with self._r.execute(
                "SELECT row_id FROM peer_rows WHERE peer = ? AND collection = ? "
                "AND row_id IN (SELECT value FROM json_each(?))",
                (peer, collection, json.dumps(row_ids[i : i + _LOOKUP_CHUNK])),
            ) as cur:
                out.extend((collection, r) for (r,) in await cur.fetchall())
        return out

    @_writes
    async def confirm_served(
        self, peer: str, *, entered: Iterable[tuple[str, str]], left: Iterable[tuple[str, str]],
        dropped: Iterable[RowDrop] = (),
    ) -> None:
        """The peer stored pages that sent it ``entered`` rows whole, purged ``left``
        ones and carried the owed ``dropped``: record what it now holds.

        Committed without waiting for the disk (``synchronous=NORMAL``): a record
        lost to a power cut only means the rows are sent whole once more, or a
        drop sent again, both harmless; serving a pull stays free of fsyncs."""
        await self._w.execute("PRAGMA synchronous = NORMAL")
        await self._w.execute("BEGIN IMMEDIATE")
        try:
            await self._w.executemany(
                "INSERT OR IGNORE INTO peer_rows (peer, collection, row_id) VALUES (?, ?, ?)",
                [(peer, c, r) for c, r in entered],
            )
            await self._w.executemany(
                "DELETE FROM peer_rows WHERE peer = ? AND collection = ? AND row_id = ?",
                [(peer, c, r) for c, r in left],
            )
            await self._w.executemany(
                "DELETE FROM peer_drops WHERE peer = ? AND collection = ? AND row_id = ? AND kind = ?",
                [(peer, d.collection, d.row_id, d.kind) for d in dropped],
            )
            await self._w.execute("COMMIT")
        except BaseException:
            await self._w.execute("ROLLBACK")
            raise
        finally:
            await self._w.execute("PRAGMA synchronous = FULL")

    @_reads
    async def owed_drops(self, peer: str, *, limit: int) -> list[RowDrop]:
        """Drops the peer has not yet confirmed (from refused pushes), oldest first."""
        async with self._r.execute(
            "SELECT collection, row_id, kind FROM peer_drops WHERE peer = ? ORDER BY collection, row_id LIMIT ?", (peer, limit)
        ) as cur:
            return [RowDrop(c, r, k) for c, r, k in await cur.fetchall()]  # type: ignore[arg-type]

    @_reads
    async def held_rows(self, peer: str, collection: str | None = None) -> list[tuple[str, str]]:
        """The governed rows ``peer`` holds, as this upstream last confirmed."""
        sql = "SELECT collection, row_id FROM peer_rows WHERE peer = ?"
        args: tuple[str, ...] = (peer,)
        if collection is not None:
            sql += " AND collection = ?"
            args += (collection,)
        async with self._r.execute(sql + " ORDER BY collection, row_id", args) as cur:
            return [(c, r) for c, r in await cur.fetchall()]

    @_reads
    async def pending_count(self, since: int, cursor: int, *, exclude_src: str) -> int:
        """How many field states a push from (``since``, ``cursor``) would send."""
        n = 0
        for collection in COLLECTIONS:
            async with self._r.execute(f"SELECT _state FROM {collection} WHERE _seq > ?", (min(since, cursor),)) as cur:
                while rows := await cur.fetchmany(5_000):
                    for (state,) in rows:
                        n += sum(1 for e in _decode_doc(state).values() if e[3] > since and e[4] != exclude_src)
        return n

    # ------------------------------------------------------------ links

    @_reads
    async def link(self, peer: str) -> LinkState | None:
        async with self._r.execute(
            f"SELECT {', '.join(_LINK_COLUMNS)} FROM links WHERE peer = ?", (peer,)
        ) as cur:
            row = await cur.fetchone()
        return None if row is None else LinkState(**dict(zip(_LINK_COLUMNS, row)))

    @_reads
    async def links(self) -> list[LinkState]:
        async with self._r.execute(f"SELECT {', '.join(_LINK_COLUMNS)} FROM links ORDER BY peer") as cur:
            rows = await cur.fetchall()
        return [LinkState(**dict(zip(_LINK_COLUMNS, row))) for row in rows]

    @_writes
    async def ensure_link(self, peer: str, direction: str) -> LinkState:
        await self._w.execute(
            "INSERT INTO links (peer, direction) VALUES (?, ?) ON CONFLICT (peer) DO NOTHING",
            (peer, direction),
        )
        link = await self.link(peer)
        assert link is not None
        return link

    @_writes
    async def reset_peer(self, peer: str, peer_store_id: str) -> None:
        """The peer is a new store: forget what it acknowledged and what we pulled from it."""
        await self._w.execute(
            "UPDATE links SET peer_store_id = ?, acked_since = 0, acked_through = 0, "
            "pull_since = 0, pull_cursor = 0, served_cursor = 0 WHERE peer = ?",
            (peer_store_id, peer),
        )
        for table in ("peer_rows", "peer_drops"):  # a new store holds nothing yet
            await self._w.execute(f"DELETE FROM {table} WHERE peer = ?", (peer,))

    @_writes
    async def record_push_ack(self, peer: str, *, since: int, cursor: int, sent: int) -> None:
        await self._w.execute(
            "UPDATE links SET push_since = ?, push_cursor = ?, last_ok_ms = ?, last_error = NULL, "
            "changes_out = changes_out + ? WHERE peer = ?",
            (since, cursor, self.clock.now_ms(), sent, peer),
        )

    @_writes
    async def set_push_cursor(self, peer: str, *, since: int, cursor: int) -> None:
        await self._w.execute(
            "UPDATE links SET push_since = ?, push_cursor = ? WHERE peer = ?", (since, cursor, peer)
        )

    @_writes
    async def record_served(self, peer: str, *, cursor: int, sent: int, audit: AuditDraft | None = None) -> None:
        """Note a complete pull run served to ``peer``: it has seen every state
        numbered up to ``cursor`` (used to count conflicts); with ``audit``, the
        entry recording the run, in the same transaction."""
        async with self._transaction():
            await self._w.execute(
                "UPDATE links SET changes_out = changes_out + ?, last_ok_ms = ?, "
                "served_cursor = max(served_cursor, ?) WHERE peer = ?",
                (sent, self.clock.now_ms(), cursor, peer),
            )
            if audit is not None:
                await self._chain_audit([audit])

    @_writes
    async def record_link_error(self, peer: str, error: str) -> None:
        await self._w.execute(
            "UPDATE links SET last_error = ?, last_error_ms = ? WHERE peer = ?",
            (error[:500], self.clock.now_ms(), peer),
        )

    # ------------------------------------------------------------ node registry

    @_reads
    async def node(self, node_id: str) -> NodeRecord | None:
        row = await _first(self._r, f"SELECT {_NODE_COLUMNS} FROM nodes WHERE node_id = ?", (node_id,))
        return None if row is None else NodeRecord(*row)

    @_reads
    async def nodes(self) -> list[NodeRecord]:
        async with self._r.execute(f"SELECT {_NODE_COLUMNS} FROM nodes ORDER BY node_id") as cur:
            return [NodeRecord(*row) for row in await cur.fetchall()]

    @_writes
    async def set_node_keys(self, node_id: str, *, key_version: int, sign_pub: bytes, kem_pub: bytes,
                            audit: AuditDraft | None = None) -> None:
        """Record an enrolled node's public keys (its signing and key-receiving keys),
        with the audit entry recording it (``audit``) in the same transaction."""
        async with self._transaction():
            await self._w.execute(
                "UPDATE nodes SET key_version = ?, sign_pub = ?, kem_pub = ? WHERE node_id = ?",
                (key_version, sign_pub, kem_pub, node_id),
            )
            if audit is not None:
                await self._chain_audit([audit])
        self.auth_generation += 1  # a trusted issuer's key may have changed

    @_writes
    async def set_node_state(self, node_id: str, *, offboarding_ms: int | None = None,
                             retired_ms: int | None = None, audit: AuditDraft | None = None) -> None:
        """Mark a node's offboarding begun and, later, its credentials retired: it is
        refused at the sync endpoints and nothing is wrapped for it again (its
        key-receiving key is forgotten); its signing key stays, to verify what it
        signed before (its purge receipts). ``audit``: the entry recording it, in
        the same transaction."""
        async with self._transaction():
            if offboarding_ms is not None:
                await self._w.execute(
                    "UPDATE nodes SET offboarding_ms = coalesce(offboarding_ms, ?) WHERE node_id = ?",
                    (offboarding_ms, node_id))
            if retired_ms is not None:
                await self._w.execute(
                    "UPDATE nodes SET retired_ms = ?, kem_pub = NULL WHERE node_id = ?", (retired_ms, node_id))
            if audit is not None:
                await self._chain_audit([audit])

    @_reads
    async def descendants(self, node_id: str) -> set[str]:
        async with self._r.execute(
            "WITH RECURSIVE below(id) AS (SELECT node_id FROM nodes WHERE parent = ? "
            "UNION SELECT n.node_id FROM nodes n JOIN below b ON n.parent = b.id) SELECT id FROM below",
            (node_id,),
        ) as cur:
            return {row[0] for row in await cur.fetchall()}

    @_writes
    async def enroll(self, node_id: str, *, parent: str | None, role: str) -> None:
        """Register a node (idempotent; updates its parent and role)."""
        await self._w.execute(
            "INSERT INTO nodes (node_id, parent, role, enrolled_ms) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (node_id) DO UPDATE SET parent = excluded.parent, role = excluded.role",
            (node_id, parent, role, self.clock.now_ms()),
        )

    # ------------------------------------------------------------ reading rows

    def auth_changed(self) -> None:
        """Something a signed-in user's check depends on changed outside the store
        (this node's identity keys): checked tokens are checked again."""
        self.auth_generation += 1

    async def auth_mark(self) -> tuple[int, int]:
        """What a signed-in user's check depends on, as two numbers: they stay the
        same while no user or campaign row, session or node key changed here (this
        node's own commits count `auth_generation` up, at once) and no other
        process committed to the file (SQLite's ``data_version`` on the writer
        moves only for other connections' commits).

        ``data_version`` is not read on every call: each reading is a trip to
        the writer's thread, and a request that awaits one goes to the back of a
        busy event loop's queue (at saturation, hundreds of milliseconds). So a
        call that finds the last reading older than `FOREIGN_REFRESH_S` starts
        the next one in the background and answers from the last; only a reading
        older than `FOREIGN_STALE_S` is waited for (a node idle that long; at
        saturation a background reading itself takes 0.2-0.3 s to come back
        through the queue, so that bound is well above the refresh's), and the
        callers that find it so share one trip. Another process's commit is
        therefore seen by every check that starts `FOREIGN_STALE_S` after it.
        No lock (a pragma that reads, harmless inside another coroutine's
        transaction)."""
        generation = self.auth_generation
        age = time.monotonic() - self._foreign_read_at
        if age >= FOREIGN_REFRESH_S and self._foreign_read is None:
            self._foreign_read = asyncio.ensure_future(self._read_foreign_version())
            self._foreign_read.add_done_callback(_retrieved)  # a failed background reading is tried again
        if age < FOREIGN_STALE_S:
            return generation, self._foreign_version
        assert self._foreign_read is not None  # started above, if not before
        # shielded: one caller's cancellation must not cancel the others' reading
        return generation, await asyncio.shield(self._foreign_read)

    async def _read_foreign_version(self) -> int:
        started = time.monotonic()
        try:
            (row,) = await self._w.execute_fetchall("PRAGMA data_version")
            self._foreign_version, self._foreign_read_at = int(row[0]), started
            return self._foreign_version
        finally:
            self._foreign_read = None

    @_reads
    async def read_row(self, collection: str, row_id: str) -> dict[str, Any] | None:
        """As `Snapshot.read_row`, in one trip."""
        return await on_thread(self._r, lambda conn: Snapshot(conn).read_row(collection, row_id))

    @_reads
    async def field_origins(self, collection: str, row_id: str) -> dict[str, str]:
        """The node that wrote each stored field state of a row (empty if none is stored)."""
        spec = COLLECTIONS[collection]
        row = await _first(self._r, f"SELECT _state FROM {spec.name} WHERE row_id = ?", (row_id,))
        return {} if row is None else {name: entry[2] for name, entry in _decode_doc(row[0]).items()}

    @_reads
    async def find_rows(
        self, collection: str, *, limit: int = 10_000, after: str = "", fields: tuple[str, ...] | None = None,
        at_least: dict[str, int] | None = None, **equals: Any,
    ) -> list[dict[str, Any]]:
        """As `Snapshot.find_rows`, in one trip."""
        return await on_thread(self._r, lambda conn: Snapshot(conn).find_rows(
            collection, limit=limit, after=after, fields=fields, at_least=at_least, **equals))

    @_reads
    async def rows_after(
        self, collection: str, after_seq: int, *, limit: int = 1_000, any_of: tuple[str, ...] = (), **equals: Any
    ) -> list[tuple[int, dict[str, Any]]]:
        """As `Snapshot.rows_after`, in one trip."""
        return await on_thread(self._r, lambda conn: Snapshot(conn).rows_after(
            collection, after_seq, limit=limit, any_of=any_of, **equals))

    @_reads
    async def work_queue(
        self, *, limit: int, after: tuple[int, int, str] | None = None, due_before: int | None = None,
        priority_min: int | None = None, **equals: Any,
    ) -> list[dict[str, Any]]:
        """As `Snapshot.work_queue`, in one trip."""
        return await on_thread(self._r, lambda conn: Snapshot(conn).work_queue(
            limit=limit, after=after, due_before=due_before, priority_min=priority_min, **equals))

    async def snapshot(self, fn: Callable[[Snapshot], _T]) -> _T:
        """``fn(snapshot)``: several reads that see one state of the file, run at
        once on the calling (event loop's) thread, on a read-only connection of
        the store's own (see `sync.store.snapshot`). So ``fn`` must be a bounded
        read (a page, one customer's rows), never a scan, and only read through
        the `Snapshot`. While the file is locked (a WAL recovery, another
        process's exclusive lock), it runs on the reader's thread instead, which
        waits there for the lock (``busy_timeout``) rather than stop the loop."""
        try:
            if self._inline is None:
                self._inline = inline_reader(self.path)
            return read_in_transaction(self._inline, fn, self.row_cache)
        except sqlite3.OperationalError as exc:
            if not is_busy(exc):
                raise
        async with self._rlock:
            return await on_thread(self._r, read_in_transaction, fn)

    @_writes
    async def index_live_rows(self, collection: str, column: str) -> str:
        """Index the live (not deleted) rows of ``collection`` by ``column``, then
        row id, unless that index exists; returns its name. With it,
        `live_rows_before` and `live_row_stamps` on ``column`` read the few rows
        they want, not every tombstone the table keeps. Only the node that asks
        pays for the index on its writes (HQ, for retention); on a large table
        the first call builds it, holding the write lock meanwhile."""
        spec = _live_spec(collection, column)
        name = f"{spec.name}__live_{column}"
        await self._w.execute(
            f"CREATE INDEX IF NOT EXISTS {name} ON {spec.name} ({column}, row_id) WHERE deleted = 0"
        )
        return name

    @_reads
    async def live_rows_before(self, collection: str, column: str, before_ms: int, *, limit: int = 1_000) -> list[str]:
        """Ids of the live rows whose time ``column`` (ms) is before ``before_ms``,
        oldest first (a NULL time never is). `index_live_rows` makes it cheap."""
        spec = _live_spec(collection, column)
        async with self._r.execute(
            f"SELECT row_id FROM {spec.name} WHERE deleted = 0 AND {column} < ? ORDER BY {column}, row_id LIMIT ?",
            (before_ms, limit),
        ) as cur:
            return [r[0] for r in await cur.fetchall()]

    @_reads
    async def live_rows_between(self, collection: str, column: str, since: int, until: int, *,
                                after: tuple[int, str] | None = None, limit: int = 1_000,
                                fields: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
        """The live rows whose time ``column`` is in [``since``, ``until``),
        materialized (only ``fields`` and ``row_id``, when given), in (``column``,
        row id) order after ``after`` (that pair of the last row of the page
        before). `index_live_rows` on ``column`` makes it a range scan (HQ has it
        on results' ``recorded_at_ms``, for retention)."""
        spec = _live_spec(collection, column)
        names, converted = _projection(collection, (*fields, column) if fields else None)
        at, row_id = after if after is not None else (since, "")
        # the page starts at ``at`` in the index: the row-value test alone would
        # make SQLite scan from ``since`` on every page
        async with self._r.execute(
            f"SELECT {', '.join(names)} FROM {spec.name} WHERE deleted = 0 AND {column} >= ? AND {column} < ? "
            f"AND ({column}, row_id) > (?, ?) ORDER BY {column}, row_id LIMIT ?",
            (max(since, at), until, at, row_id, limit),
        ) as cur:
            rows = await cur.fetchall()
        return [_materialize(converted, names, r) for r in rows]

    @_reads
    async def live_row_stamps(
        self, collection: str, field: str | None = None, *, after: str = "", limit: int = 1_000, **equals: Any
    ) -> list[tuple[str, int]]:
        """(row id, HLC stamp) of the live rows that match ``equals`` (as in
        `find_rows`), in row id order after ``after``. The stamp is that of
        ``field``'s stored state (when it was last written, at whichever node);
        with no ``field``, or none stored, the row's earliest stamp (when it was
        made). `index_live_rows` on the one column ``equals`` names makes it cheap."""
        spec = _live_spec(collection, field)
        where, params = _where(spec, equals)
        async with self._r.execute(
            f"SELECT row_id, _state FROM {spec.name} WHERE deleted = 0 AND {where} AND row_id > ? "
            "ORDER BY row_id LIMIT ?",
            (*params, after, limit),
        ) as cur:
            rows = await cur.fetchall()
        out = []
        for row_id, state in rows:
            doc = _decode_raw_doc(state)
            raw = doc.get(field) if field is not None else None
            if raw is not None:
                out.append((row_id, _decode_stamp(raw)[1]))
            elif doc:
                out.append((row_id, min(_decode_stamp(r)[1] for r in doc.values())))
        return out

    async def checkpoint(self) -> None:
        """Copy the WAL into the database and truncate it to zero bytes, so pages
        that held shredded secrets leave the WAL (after an erasure)."""
        async with self._wlock, self._rlock:
            async with self._w.execute("PRAGMA wal_checkpoint(TRUNCATE)") as cur:
                busy, _, _ = await cur.fetchone()  # type: ignore[misc]
            if busy:
                raise StoreBusyError(self.path, "WAL checkpoint")

    @_reads
    async def row_ids(self, collection: str, *, limit: int = 1000, after: str = "") -> list[str]:
        spec = COLLECTIONS[collection]
        async with self._r.execute(
            f"SELECT row_id FROM {spec.name} WHERE row_id > ? ORDER BY row_id LIMIT ?", (after, limit)
        ) as cur:
            return [r[0] for r in await cur.fetchall()]

    @_writes
    async def defer_indexes(self) -> list[str]:
        """Drop the column indexes (blind indexes, key-record lookups) before a bulk
        load, and return their names: inserting random values (a blind index is a
        keyed hash) into an index touches most of its pages in every transaction,
        which is most of what an initial pull of sealed customers costs; building
        it once afterwards is cheap. `restore_indexes` builds them again, and so
        does `open` after a crash. Queries still work meanwhile, by scanning."""
        dropped = []
        for spec in COLLECTIONS.values():
            for c in spec.columns.values():
                if c.index:
                    name = f"{spec.name}_{c.name}"
                    await self._w.execute(f"DROP INDEX IF EXISTS {name}")
                    dropped.append(name)
        return dropped

    @_writes
    async def restore_indexes(self) -> None:
        """Build the column indexes `defer_indexes` dropped (a no-op for those present)."""
        for spec in COLLECTIONS.values():
            for c in spec.columns.values():
                if c.index:
                    await self._w.execute(column_index(spec, c))

    @_reads
    async def column_values(
        self, collection: str, column: str, *, after: str = "", limit: int = 1000
    ) -> list[tuple[str, Any]]:
        """(row id, stored value) of the rows whose ``column`` is not NULL, in row
        id order after ``after``: a cheap scan of one column (deleted rows hold no
        secret columns, so for those this reads live rows only)."""
        spec = COLLECTIONS[collection]
        if column not in spec.columns:
            raise KeyError(f"`{collection}` has no column `{column}`")
        async with self._r.execute(
            f"SELECT row_id, {column} FROM {spec.name} WHERE row_id > ? AND {column} IS NOT NULL "
            "ORDER BY row_id LIMIT ?",
            (after, limit),
        ) as cur:
            return [(r[0], r[1]) for r in await cur.fetchall()]

    @_reads
    async def digest(self, collections: list[str] | None = None, *, admit: RowFilter | None = None,
                     scope: PeerScope | None = None) -> str:
        """SHA-256 over every field state (value, stamp, origin) in key order, of
        ``collections`` (all by default) and of the rows ``admit`` admits; with a
        peer's ``scope``, of the rows and fields it admits (to compare with what
        that peer holds).

        Local numbering and sources are left out: converged replicas have equal digests.
        """
        if scope is not None and admit is None:
            admit = scope.admits
        h = hashlib.sha256()
        enc = msgspec.msgpack.Encoder().encode
        await self._r.execute("BEGIN")
        try:
            for collection in sorted(collections if collections is not None else COLLECTIONS):
                by_parent = scope is not None and collection in PARENTS and scope.governs(collection)
                async with self._r.execute(f"SELECT row_id, _state FROM {collection} ORDER BY row_id") as cur:
                    while rows := await cur.fetchmany(5_000):
                        if by_parent:
                            parents = await self._parent_docs(collection, [st for _, st in rows])
                        for row_id, state in rows:
                            doc = _decode_doc(state)
                            if by_parent:
                                assert scope is not None
                                parent = parent_id(collection, doc)
                                if not scope.admits_child(collection, None if parent is None else
                                                          parents.get((PARENTS[collection][0], parent))):
                                    continue
                            elif admit is not None and not admit(collection, doc):
                                continue
                            present = None if scope is None else scope.present(collection)
                            fields = [(n, e[0], e[1], e[2]) for n, e in sorted(doc.items())
                                      if present is None or n in present]
                            h.update(enc((collection, row_id, fields)))
        finally:
            await self._r.execute("COMMIT")
        return h.hexdigest()

    @_reads
    async def counts(self) -> dict[str, int]:
        """Rows per collection."""
        out: dict[str, int] = {}
        for name in COLLECTIONS:
            async with self._r.execute(f"SELECT count(*) FROM {name}") as cur:
                (out[name],) = await cur.fetchone()  # type: ignore[misc]
        return out

    # ------------------------------------------------------------ sign-in state (local, not replicated)

    @_writes
    async def create_session(self, session: SessionRecord, token_hash: bytes) -> None:
        """Store a new session and its first refresh token (by hash), in one transaction."""
        await self._w.execute("BEGIN IMMEDIATE")
        try:
            await self._w.execute(
                f"INSERT INTO auth_sessions ({', '.join(_SESSION_COLUMNS)}) "
                f"VALUES ({', '.join('?' * len(_SESSION_COLUMNS))})",
                tuple(getattr(session, c) for c in _SESSION_COLUMNS),
            )
            await self._w.execute(
                "INSERT INTO auth_refresh_tokens (token_hash, session_id, issued_ms) VALUES (?, ?, ?)",
                (token_hash, session.session_id, session.created_ms),
            )
            await self._w.execute("COMMIT")
        except BaseException:
            await self._w.execute("ROLLBACK")
            raise

    @_reads
    async def session(self, session_id: str) -> SessionRecord | None:
        row = await _first(self._r, f"SELECT {', '.join(_SESSION_COLUMNS)} FROM auth_sessions WHERE session_id = ?",
                           (session_id,))
        return None if row is None else SessionRecord(**dict(zip(_SESSION_COLUMNS, row)))

    @_writes
    async def use_refresh_token(
        self, token_hash: bytes, new_hash: bytes, *, now_ms: int
    ) -> tuple[RefreshUse, SessionRecord | None]:
        """Spend a refresh token and store its successor ``new_hash``, in one transaction.

        A token is spent once: presenting a spent one again (``reused``) revokes
        its whole session, since either its holder or a thief has the newer one.
        ``unknown``, ``revoked`` and ``expired`` store nothing.
        """
        await self._w.execute("BEGIN IMMEDIATE")
        try:
            async with self._w.execute(
                f"SELECT t.used_ms, {', '.join('s.' + c for c in _SESSION_COLUMNS)} FROM auth_refresh_tokens t "
                "JOIN auth_sessions s ON s.session_id = t.session_id WHERE t.token_hash = ?",
                (token_hash,),
            ) as cur:
                row = await cur.fetchone()
            if row is None:
                outcome: tuple[RefreshUse, SessionRecord | None] = ("unknown", None)
            else:
                session = SessionRecord(**dict(zip(_SESSION_COLUMNS, row[1:])))
                if row[0] is not None:
                    if session.revoked_ms is None:
                        await self._w.execute(
                            "UPDATE auth_sessions SET revoked_ms = ?, revoked_why = 'refresh_reused' "
                            "WHERE session_id = ?",
                            (now_ms, session.session_id),
                        )
                        session = msgspec.structs.replace(session, revoked_ms=now_ms, revoked_why="refresh_reused")
                    outcome = ("reused", session)
                elif session.revoked_ms is not None:
                    outcome = ("revoked", session)
                elif session.expires_ms <= now_ms:
                    outcome = ("expired", session)
                else:
                    await self._w.execute(
                        "UPDATE auth_refresh_tokens SET used_ms = ? WHERE token_hash = ?", (now_ms, token_hash)
                    )
                    await self._w.execute(
                        "INSERT INTO auth_refresh_tokens (token_hash, session_id, issued_ms) VALUES (?, ?, ?)",
                        (new_hash, session.session_id, now_ms),
                    )
                    outcome = ("rotated", session)
            await self._w.execute("COMMIT")
        except BaseException:
            await self._w.execute("ROLLBACK")
            raise
        if outcome[0] == "reused":  # the session was revoked
            self.auth_generation += 1
        return outcome

    @_writes
    async def revoke_session(self, session_id: str, *, now_ms: int, why: str) -> bool:
        """End a session (its refresh tokens and its access tokens here); False if
        there is no such live session."""
        cur = await self._w.execute(
            "UPDATE auth_sessions SET revoked_ms = ?, revoked_why = ? WHERE session_id = ? AND revoked_ms IS NULL",
            (now_ms, why, session_id),
        )
        self.auth_generation += 1
        return bool(cur.rowcount)

    @_writes
    async def add_device(self, device: DeviceRecord) -> None:
        await self._w.execute(
            f"INSERT INTO auth_devices ({', '.join(_DEVICE_COLUMNS)}) VALUES ({', '.join('?' * len(_DEVICE_COLUMNS))})",
            tuple(getattr(device, c) for c in _DEVICE_COLUMNS),
        )

    @_reads
    async def device(self, device_id: str) -> DeviceRecord | None:
        async with self._r.execute(
            f"SELECT {', '.join(_DEVICE_COLUMNS)} FROM auth_devices WHERE device_id = ?", (device_id,)
        ) as cur:
            row = await cur.fetchone()
        return None if row is None else DeviceRecord(**dict(zip(_DEVICE_COLUMNS, row)))

    @_writes
    async def purge_sessions(self, *, before_ms: int) -> int:
        """Delete sessions (and their refresh tokens) that ended before ``before_ms``."""
        await self._w.execute("BEGIN IMMEDIATE")
        try:
            ended = "SELECT session_id FROM auth_sessions WHERE expires_ms < ?"
            await self._w.execute(f"DELETE FROM auth_refresh_tokens WHERE session_id IN ({ended})", (before_ms,))
            cur = await self._w.execute("DELETE FROM auth_sessions WHERE expires_ms < ?", (before_ms,))
            await self._w.execute("COMMIT")
        except BaseException:
            await self._w.execute("ROLLBACK")
            raise
        self.auth_generation += 1
        return int(cur.rowcount)


#: marks a state whose plain value must be decoded from its bytes
_UNDECODED = object()


class _Screen:
    """A push weighed against the pushing peer's scope, before and after merging.

    Before: a change to a governed row outside the scope (as stored here, or for
    a row new here, as pushed) is refused ``out_of_scope`` and the peer owes a
    purge of it; a change to a field the peer may not write is refused
    ``not_writable`` and the peer owes a reset of the row (a row it makes may
    also set the fields the scope is decided on). After: a row the
    merged changes would move out of the scope is put back as it was, its
    changes refused ``out_of_scope``.
    """

    def __init__(self, scope: PeerScope, incoming: list[Incoming], docs: dict[_RowKey, Doc], peer: str) -> None:
        self.scope = scope
        self.refused: dict[int, str] = {}
        self.owed: dict[_RowKey, str] = {}
        self.new_rows: set[_RowKey] = set()
        self.by_row: defaultdict[_RowKey, list[Incoming]] = defaultdict(list)
        for inc in incoming:
            if scope.governs(inc.spec.collection):
                self.by_row[(inc.spec.collection, inc.row_id)].append(inc)
        self.before: dict[_RowKey, Doc] = {}
        pushed = {key: {i.spec.name: (i.state.raw, i.state.hlc, i.state.origin, 0, peer) for i in incs}
                  for key, incs in self.by_row.items() if not docs[key]}
        for key, incs in self.by_row.items():
            doc = docs[key]
            if not doc:
                self.new_rows.add(key)
                doc = pushed[key]
            if key[0] in PARENTS:  # in scope when its parent is (as stored, or as pushed when new)
                parent = parent_id(key[0], doc)
                pkey = (PARENTS[key[0]][0], parent or "")
                admitted = scope.admits_child(key[0], None if parent is None else docs.get(pkey) or pushed.get(pkey))
            else:
                admitted = scope.admits_row(key[0], doc)
            if not admitted:
                self._refuse(key, incs, "out_of_scope", "purge")
                continue
            made_here = key in self.new_rows  # its maker sets the fields its scope is decided on
            for inc in incs:
                if not scope.may_write(key[0], inc.spec.name) and not (made_here and inc.spec.name in scope.reads[key[0]]):
                    self.refused[inc.index] = "not_writable"
                    self.owed[key] = "reset" if key not in self.new_rows else "purge"
            self.before[key] = dict(docs[key])

    def _refuse(self, key: _RowKey, incs: list[Incoming], reason: str, drop: str) -> None:
        for inc in incs:
            self.refused[inc.index] = reason
        self.owed[key] = drop

    def recheck(self, batch: _Batch) -> set[int]:
        """Put back the rows the merged push moved out of the scope; returns the
        indexes of the changes undone (they had been applied)."""
        undone: set[int] = set()
        for key, before in self.before.items():
            if key[0] in PARENTS:  # names its parent once; its parent is put back if need be
                continue
            if key in batch.dirty and not self.scope.admits_row(key[0], batch.docs[key]):
                batch.docs[key] = before
                batch.dirty.pop(key)
                batch.owners.pop(key, None)
                undone.update(i.index for i in self.by_row[key] if i.index not in self.refused)
                for inc in self.by_row[key]:
                    self.refused[inc.index] = "out_of_scope"
                self.owed[key] = "purge" if key in self.new_rows else "reset"
        return undone


def _live_spec(collection: str, column: str | None) -> Any:
    """The spec of a collection with a tombstone, checking that it has ``column``."""
    spec = COLLECTIONS[collection]
    if "deleted" not in spec.columns:
        raise KeyError(f"{collection} has no tombstone: no row of it is ever deleted")
    if column is not None and column not in spec.columns:
        raise KeyError(f"{collection} has no field {column!r}")
    return spec


async def _first(conn: aiosqlite.Connection, sql: str, params: Any = ()) -> Any:
    """The first row a query answers (None: none), in one trip to the connection's
    thread (``async with execute`` takes three: execute, fetch, close)."""
    return next(iter(await conn.execute_fetchall(sql, params)), None)


def _retrieved(future: asyncio.Future[Any]) -> None:
    """Mark a background future's exception as seen (whoever awaits it gets it)."""
    if not future.cancelled():
        future.exception()


async def _read_meta(conn: aiosqlite.Connection) -> dict[str, Any]:
    async with conn.execute("SELECT key, value FROM meta") as cur:
        return dict(await cur.fetchall())


#: `SqliteStore.auth_mark` reads another process's commits again in the background
#: when its last reading is this old, in seconds ...
FOREIGN_REFRESH_S = 0.25
#: ... and waits for a new reading when its last is this old: the most it is behind
FOREIGN_STALE_S = 2.0
#: the collections a signed-in user's check and actor are derived from (`auth_mark`)
_AUTH_COLLECTIONS = frozenset({"users", "campaigns"})


def wall_clock_ms() -> int:
    """The edge's wall clock, for ``Clock(now_ms=wall_clock_ms)``."""
    return time.time_ns() // 1_000_000
