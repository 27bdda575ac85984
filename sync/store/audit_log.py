"""The audit log's SQL: a mixin of `sync.store.sqlite.SqliteStore`.

This node's own chain is appended to here, each entry numbered and chained
(`sync.audit.chain_entry`) under the write lock after the head read in the same
transaction (another process may share the file): inside the transaction of the
write it records (``write_local(..., audit=draft)``), or alone. Lone appends
(the reads of the API) are group-committed: entries that arrive while a commit
is in flight wait for the next one and share its fsync, and each caller returns
only once its own entry is durable. Under load (entries arriving less than
``AUDIT_BUSY_GAP_S`` apart), a commit also waits ``AUDIT_GATHER_S`` for more
entries to join it before it starts: the card's reads reach the store one at a
time, so without the wait nearly every entry paid for a commit of its own.

Chains collected from the nodes below are stored beside it as they came
(`collect_audit`); `audit_after` reads everything after a forwarding cursor.
"""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Any

import aiosqlite

from sync.audit import AuditCheckpoint, AuditDraft, AuditEntry, chain_entry, genesis
from sync.store import audit_rows
from sync.store.locks import reads, writes
from sync.store.snapshot import on_thread


def _head(conn: sqlite3.Connection, node_id: str) -> tuple[int, bytes]:
    """(seq, hash) of ``node_id``'s last entry; read inside each transaction, as
    another process on the same file (``outpost sync``) may have appended."""
    row = conn.execute("SELECT seq, hash FROM audit_entries WHERE node = ? ORDER BY seq DESC LIMIT 1",
                       (node_id,)).fetchone()
    if row is None:
        row = conn.execute("SELECT seq, hash FROM audit_anchors WHERE node = ?", (node_id,)).fetchone()
    return (0, genesis(node_id)) if row is None else (int(row[0]), bytes(row[1]))


def _chain(conn: sqlite3.Connection, node_id: str, drafts: list[AuditDraft]) -> list[AuditEntry]:
    """Number, chain and insert ``drafts`` inside the transaction under way."""
    seq, prev = _head(conn, node_id)
    entries = []
    for draft in drafts:
        seq += 1
        entry = chain_entry(node_id, seq, prev, draft)
        entries.append(entry)
        prev = entry.hash
    conn.executemany(audit_rows.INSERT, [audit_rows.audit_params(e) for e in entries])
    subjects = [p for e in entries for p in audit_rows.subject_params(e)]
    if subjects:
        conn.executemany(audit_rows.ROWS_INSERT, subjects)
    return entries


def _commit(conn: sqlite3.Connection, node_id: str, drafts: list[AuditDraft]) -> list[AuditEntry]:
    """`_chain` in a transaction of its own."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        entries = _chain(conn, node_id, drafts)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return entries


#: how long a group commit under load waits for more entries before it starts
AUDIT_GATHER_S = 0.002
#: lone appends closer together than this mean load: commits then gather
AUDIT_BUSY_GAP_S = 0.005


class AuditLogStore:
    """Audit entries, checkpoints, anchors, verification progress and alerts."""

    node_id: str
    _w: aiosqlite.Connection
    _r: aiosqlite.Connection
    _wlock: asyncio.Lock
    _rlock: asyncio.Lock

    def _audit_init(self) -> None:
        self._audit_queue: list[tuple[AuditDraft, asyncio.Future[AuditEntry]]] = []
        self._audit_flusher: asyncio.Task[None] | None = None
        self._audit_last_s = float("-inf")

    async def _audit_drain(self) -> None:
        """Wait for the entries queued for commit (before the store closes)."""
        while self._audit_flusher is not None and not self._audit_flusher.done():
            await asyncio.shield(self._audit_flusher)

    # ------------------------------------------------------------ appending (writer, under the lock)

    async def _chain_audit(self, drafts: list[AuditDraft]) -> list[AuditEntry]:
        """Number, chain and insert ``drafts`` inside the caller's transaction."""
        return await on_thread(self._w, _chain, self.node_id, drafts)

    async def append_audit(self, draft: AuditDraft) -> AuditEntry:
        """Append one entry to this node's chain; returns once it is committed."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[AuditEntry] = loop.create_future()
        self._audit_queue.append((draft, future))
        now_s = loop.time()
        busy, self._audit_last_s = now_s - self._audit_last_s < AUDIT_BUSY_GAP_S, now_s
        if self._audit_flusher is None or self._audit_flusher.done():
            self._audit_flusher = asyncio.create_task(self._flush_audit(gather=busy))
        return await asyncio.shield(future)

    async def _flush_audit(self, *, gather: bool) -> None:
        while self._audit_queue:
            if gather:
                await asyncio.sleep(AUDIT_GATHER_S)
            async with self._wlock:
                queued, self._audit_queue = self._audit_queue, []
                try:
                    entries = await on_thread(self._w, _commit, self.node_id, [draft for draft, _ in queued])
                except Exception as exc:  # noqa: BLE001 - every waiter gets the failure
                    for _, future in queued:
                        if not future.done():
                            future.set_exception(exc)
                    continue
            for (_, future), entry in zip(queued, entries):
                if not future.done():
                    future.set_result(entry)

    @writes
    async def append_audit_within(
        self, draft: AuditDraft, *, limit: int, since_ms: int
    ) -> tuple[AuditEntry | None, int, int | None]:
        """Append ``draft`` only if its actor has fewer than ``limit`` ``ok`` entries
        of its action since ``since_ms`` here, counted and appended in one
        transaction. Returns (the entry or None when over the limit, the count
        including it, the oldest counted entry's time or None)."""
        await self._w.execute("BEGIN IMMEDIATE")
        try:
            async with self._w.execute(
                "SELECT count(*), min(at_ms) FROM audit_entries "
                "WHERE actor = ? AND action = ? AND outcome = 'ok' AND at_ms >= ? AND node = ?",
                (draft.actor, draft.action, since_ms, self.node_id),
            ) as cur:
                count, oldest = await cur.fetchone()  # type: ignore[misc]
            entry = None
            if count < limit:
                [entry] = await self._chain_audit([draft])
                count += 1
                oldest = draft.at_ms if oldest is None else oldest
            await self._w.execute("COMMIT")
        except BaseException:
            await self._w.execute("ROLLBACK")
            raise
        return entry, int(count), oldest

    @writes
    async def foreign_write_mark(self) -> int:
        """SQLite's ``data_version`` on the writer connection: it changes exactly
        when another connection has committed to the file since the last call,
        i.e. when someone edited the database behind this node's back (the node's
        own commits leave it as it is), so a full self-check can run only then."""
        async with self._w.execute("PRAGMA data_version") as cursor:
            row = await cursor.fetchone()
        assert row is not None
        return int(row[0])

    # ------------------------------------------------------------ collecting from below, forwarding up

    @writes
    async def collect_audit(
        self, entries: list[AuditEntry], checkpoints: list[AuditCheckpoint]
    ) -> list[tuple[AuditEntry, AuditEntry]]:
        """Keep entries and checkpoints sent from below, in one transaction. An
        entry (or checkpoint) already held is not replaced; returns each entry
        that differs from the copy held, paired with that copy."""
        differing: list[tuple[AuditEntry, AuditEntry]] = []
        await self._w.execute("BEGIN IMMEDIATE")
        try:
            for entry in entries:
                cur = await self._w.execute(audit_rows.INSERT_NEW, audit_rows.audit_params(entry))
                if cur.rowcount == 0:
                    async with self._w.execute(
                        f"{audit_rows.SELECT} WHERE node = ? AND seq = ?", (entry.node, entry.seq)
                    ) as held_cur:
                        held = audit_rows.entry_of(await held_cur.fetchone())
                    if held.hash != entry.hash or held != entry:
                        differing.append((entry, held))
                    continue
                subjects = audit_rows.subject_params(entry)
                if subjects:
                    await self._w.executemany(audit_rows.ROWS_INSERT, subjects)
            await self._w.executemany(audit_rows.CHECKPOINT_INSERT,
                                      [audit_rows.checkpoint_params(c) for c in checkpoints])
            await self._w.execute("COMMIT")
        except BaseException:
            await self._w.execute("ROLLBACK")
            raise
        return differing

    @reads
    async def audit_after(self, rowid: int, *, limit: int) -> list[tuple[int, AuditEntry]]:
        """Entries of any chain stored after ``rowid`` (arrival order), with their rowids."""
        async with self._r.execute(f"{audit_rows.SELECT} WHERE rowid > ? ORDER BY rowid LIMIT ?", (rowid, limit)) as cur:
            return [(int(r[0]), audit_rows.entry_of(r)) for r in await cur.fetchall()]

    @reads
    async def audit_checkpoints_after(self, rowid: int, *, limit: int = 1_000) -> list[tuple[int, AuditCheckpoint]]:
        """Checkpoints of any chain stored after ``rowid`` (arrival order), with their rowids."""
        async with self._r.execute(
            f"{audit_rows.CHECKPOINT_SELECT} WHERE rowid > ? ORDER BY rowid LIMIT ?", (rowid, limit)
        ) as cur:
            return [(int(r[-1]), audit_rows.checkpoint_of(r)) for r in await cur.fetchall()]

    @reads
    async def audit_cursor(self, name: str) -> int:
        """A forwarding cursor kept in ``meta`` (0 before the first use)."""
        async with self._r.execute("SELECT value FROM meta WHERE key = ?", (f"audit_{name}",)) as cur:
            row = await cur.fetchone()
        return 0 if row is None else int(row[0])

    @writes
    async def set_audit_cursor(self, name: str, value: int) -> None:
        await self._w.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = max(value, excluded.value)",
            (f"audit_{name}", value),
        )

    @reads
    async def audit_head(self) -> tuple[int, bytes]:
        """(seq, hash) of this node's last entry; (0, genesis) before the first."""
        return await on_thread(self._r, _head, self.node_id)

    @writes
    async def add_audit_checkpoint(self, checkpoint: AuditCheckpoint) -> None:
        await self._w.execute(audit_rows.CHECKPOINT_INSERT, audit_rows.checkpoint_params(checkpoint))

    # ------------------------------------------------------------ reading one chain

    @reads
    async def audit_chain(self, node: str, *, after_seq: int = 0, limit: int = 10_000) -> list[AuditEntry]:
        """``node``'s entries held here after ``after_seq``, in sequence order, as
        they are stored now (edited ones included: the chain check judges)."""
        async with self._r.execute(
            f"{audit_rows.SELECT} WHERE node = ? AND seq > ? ORDER BY seq LIMIT ?", (node, after_seq, limit)
        ) as cur:
            return [audit_rows.entry_of(r) for r in await cur.fetchall()]

    @reads
    async def audit_checkpoints(self, node: str, *, after_seq: int = 0) -> list[AuditCheckpoint]:
        """``node``'s checkpoints held here for entries after ``after_seq``, in seq order."""
        async with self._r.execute(f"{audit_rows.CHECKPOINT_SELECT} WHERE node = ? AND seq > ? ORDER BY seq",
                                   (node, after_seq)) as cur:
            return [audit_rows.checkpoint_of(r) for r in await cur.fetchall()]

    @reads
    async def audit_nodes(self) -> list[str]:
        """Every node whose entries or checkpoints are held here."""
        async with self._r.execute(
            "SELECT node FROM audit_entries GROUP BY node UNION SELECT node FROM audit_checkpoints GROUP BY node "
            "UNION SELECT node FROM audit_anchors"
        ) as cur:
            return sorted(r[0] for r in await cur.fetchall())

    @reads
    async def audit_anchor(self, node: str) -> tuple[int, bytes] | None:
        """Where ``node``'s retained chain starts: (seq, hash) of the last entry retention removed."""
        async with self._r.execute("SELECT seq, hash FROM audit_anchors WHERE node = ?", (node,)) as cur:
            row = await cur.fetchone()
        return None if row is None else (int(row[0]), bytes(row[1]))

    # ------------------------------------------------------------ the auditor's questions

    @reads
    async def audit_entries(
        self, *, row_id: str | None = None, actor: str | None = None, action: str | None = None,
        node: str | None = None, since_ms: int | None = None, until_ms: int | None = None,
        after: tuple[int, int] = (0, 0), limit: int = 1_000,
    ) -> list[tuple[int, AuditEntry]]:
        """Entries naming ``row_id``, of ``actor`` / ``action`` / ``node``, in
        [``since_ms``, ``until_ms``), oldest first, after the (at_ms, rowid) ``after``;
        each with its rowid (the next page's ``after`` is the last one's (at_ms, rowid))."""
        clauses, params, source = ["(e.at_ms, e.rowid) > (?, ?)"], [*after], "audit_entries e"
        if row_id is not None:
            source = "audit_rows r JOIN audit_entries e ON e.node = r.node AND e.seq = r.seq"
            clauses.append("r.row_id = ?")
            params.append(row_id)
        for column, value in (("actor", actor), ("action", action), ("node", node)):
            if value is not None:
                clauses.append(f"e.{column} = ?")
                params.append(value)
        if since_ms is not None:
            clauses.append("e.at_ms >= ?")
            params.append(since_ms)
        if until_ms is not None:
            clauses.append("e.at_ms < ?")
            params.append(until_ms)
        async with self._r.execute(
            f"{audit_rows.SELECT_E} FROM {source} WHERE {' AND '.join(clauses)} ORDER BY e.at_ms, e.rowid LIMIT ?",
            (*params, limit),
        ) as cur:
            return [(int(r[0]), audit_rows.entry_of(r)) for r in await cur.fetchall()]

    @reads
    async def count_audit(self, *, actor: str, action: str, since_ms: int, outcome: str = "ok") -> int:
        """How many ``outcome`` entries of ``action`` ``actor`` has here since ``since_ms``."""
        async with self._r.execute(
            "SELECT count(*) FROM audit_entries WHERE actor = ? AND action = ? AND outcome = ? AND at_ms >= ? "
            "AND node = ?",
            (actor, action, outcome, since_ms, self.node_id),
        ) as cur:
            (count,) = await cur.fetchone()  # type: ignore[misc]
        return int(count)

    # ------------------------------------------------------------ verification progress and alerts

    @reads
    async def audit_verified(self, node: str) -> tuple[int, bytes] | None:
        async with self._r.execute("SELECT seq, hash FROM audit_verified WHERE node = ?", (node,)) as cur:
            row = await cur.fetchone()
        return None if row is None else (int(row[0]), bytes(row[1]))

    @writes
    async def set_audit_verified(self, node: str, seq: int, hash_: bytes) -> None:
        await self._w.execute(
            "INSERT INTO audit_verified (node, seq, hash) VALUES (?, ?, ?) "
            "ON CONFLICT (node) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
            (node, seq, hash_),
        )

    @writes
    async def add_audit_alert(self, node: str, seq: int, kind: str, detail: str, at_ms: int) -> bool:
        """Record a break; False when the same (node, entry, kind) was already raised."""
        cur = await self._w.execute(
            "INSERT OR IGNORE INTO audit_alerts (node, seq, kind, detail, at_ms) VALUES (?, ?, ?, ?, ?)",
            (node, seq, kind, detail, at_ms),
        )
        return cur.rowcount > 0

    @reads
    async def count_audit_alerts(self) -> int:
        async with self._r.execute("SELECT count(*) FROM audit_alerts") as cur:
            (count,) = await cur.fetchone()  # type: ignore[misc]
        return int(count)

    @reads
    async def audit_alerts(self, *, node: str | None = None, limit: int = 1_000) -> list[dict[str, Any]]:
        """Alerts raised here, newest first."""
        where, params = ("WHERE node = ?", [node]) if node is not None else ("", [])
        async with self._r.execute(
            f"SELECT alert_id, node, seq, kind, detail, at_ms FROM audit_alerts {where} "
            "ORDER BY alert_id DESC LIMIT ?", (*params, limit),
        ) as cur:
            rows = await cur.fetchall()
        return [dict(zip(("alert_id", "node", "seq", "kind", "detail", "at_ms"), r)) for r in rows]

    # ------------------------------------------------------------ retention

    @writes
    async def prune_audit(self, node: str, through_seq: int, hash_: bytes, at_ms: int) -> int:
        """Remove ``node``'s entries up to ``through_seq`` (whose hash is ``hash_``,
        attested by a signed checkpoint) and anchor the chain there; returns how
        many were removed."""
        await self._w.execute("BEGIN IMMEDIATE")
        try:
            await self._w.execute(
                "INSERT INTO audit_anchors (node, seq, hash, at_ms) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (node) DO UPDATE SET seq = excluded.seq, hash = excluded.hash, at_ms = excluded.at_ms",
                (node, through_seq, hash_, at_ms),
            )
            await self._w.execute("DELETE FROM audit_rows WHERE node = ? AND seq <= ?", (node, through_seq))
            cur = await self._w.execute("DELETE FROM audit_entries WHERE node = ? AND seq <= ?", (node, through_seq))
            await self._w.execute("COMMIT")
        except BaseException:
            await self._w.execute("ROLLBACK")
            raise
        return int(cur.rowcount)
