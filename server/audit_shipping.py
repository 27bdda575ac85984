"""Audit chains travel up: each node sends its upstream, after every sync round,
the entries and checkpoints it holds and has not sent yet (its own, and those
collected from the nodes below it), over ``POST /sync/audit``, signed like the
other sync requests. The upstream keeps them as they came, append-only, checks
the new part of every chain (server/audit_verify.py) and raises an alert on any
break; HQ so ends up holding and checking every node's chain.

Before sending, the node signs its chain head (a checkpoint) if the last
signature is ``audit.checkpoint_interval_s`` old, and at most every
``audit.self_check_interval_s`` re-reads its whole chain: a break in entries it
has already sent (an edit made to its database afterwards) is reported in the
batch, and the upstream raises it. No web framework here.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import msgspec

from crypto.identity import NodeIdentity
from server.audit_verify import raise_alerts, sign_checkpoint, verify_chain, verify_new
from server.config import AuditConfig
from sync.audit import AuditAck, AuditBatch, AuditCheckpoint, ChainBreak
from sync.errors import MalformedBatchError, UnknownNodeError
from sync.store.sqlite import SqliteStore

log = logging.getLogger(__name__)

_decode_batch = msgspec.msgpack.Decoder(AuditBatch).decode
_decode_ack = msgspec.msgpack.Decoder(AuditAck).decode
_encode = msgspec.msgpack.encode

#: breaks of its own chain a node reports in one shipment, at most
_BREAKS_REPORTED = 100

#: sends one signed request to the upstream's ``/sync/{route}``; returns its body
Send = Callable[[str, bytes], Awaitable[bytes]]


class AuditShipper:
    """This node's side: checkpoints, self-checks, and shipments upstream."""

    def __init__(self, store: SqliteStore, identity_of: Callable[[], NodeIdentity], config: AuditConfig,
                 now_ms: Callable[[], int], send: Send | None = None) -> None:
        self.store = store
        self.identity_of = identity_of
        self.config = config
        self.now_ms = now_ms
        self.send = send
        self._signed_seq: int | None = None
        self._signed_ms: int | None = None
        self._checked_ms: int | None = None
        #: the store's foreign-write mark at the last self-check
        self._mark: int | None = None
        #: the last self-check's breaks (empty: whole)
        self.last_breaks: list[ChainBreak] = []

    async def checkpoint(self, *, due_only: bool = False) -> AuditCheckpoint | None:
        """Sign the chain head if it moved since the last checkpoint; with
        ``due_only`` (a shipment), only if the last one is older than
        ``checkpoint_interval_s``: HQ keeps the entries it receives, so signing
        every few seconds would only grow the checkpoints."""
        now = self.now_ms()
        if due_only and self._signed_ms is not None and \
                now - self._signed_ms < self.config.checkpoint_interval_s * 1000:
            return None
        seq, hash_ = await self.store.audit_head()
        if self._signed_seq is None:
            own = await self.store.audit_checkpoints(self.store.node_id, after_seq=max(0, seq - 1))
            self._signed_seq = own[-1].seq if own else 0
        if seq <= self._signed_seq:
            return None
        cp = sign_checkpoint(self.identity_of(), seq, hash_, now)
        await self.store.add_audit_checkpoint(cp)
        self._signed_seq, self._signed_ms = seq, now
        return cp

    async def self_check(self, *, force: bool = False) -> list[ChainBreak]:
        """Re-read this node's whole chain: the first time after the node opens
        (an edit made while it was stopped), whenever another process has written
        to its database file since the last check (an edit made while it runs),
        and at least every ``self_check_interval_s``; or when ``force``. A break
        is also raised as an alert here."""
        now = self.now_ms()
        mark = await self.store.foreign_write_mark()
        touched = mark != self._mark
        due = touched or self._checked_ms is None or now - self._checked_ms >= self.config.self_check_interval_s * 1000
        if force or due:
            self._mark = mark
            identity = self.identity_of()
            found = await verify_chain(self.store, self.store.node_id,
                                       own_key=(identity.key_version, identity.public().sign_pub))
            self._checked_ms = now
            self.last_breaks = found.breaks[:_BREAKS_REPORTED]
            await raise_alerts(self.store, found.breaks, now, on_new=_log_break)
        return self.last_breaks

    async def ship(self) -> int:
        """Send everything not yet sent, in batches of ``ship_limit`` entries;
        returns how many entries went. Raises the transport's `SyncError`s."""
        if self.send is None:
            return 0
        await self.checkpoint(due_only=True)
        broken = await self.self_check()
        sent = 0
        while True:
            entry_cursor = await self.store.audit_cursor("shipped")
            cp_cursor = await self.store.audit_cursor("checkpoints_shipped")
            entries = await self.store.audit_after(entry_cursor, limit=self.config.ship_limit)
            checkpoints = await self.store.audit_checkpoints_after(cp_cursor, limit=self.config.ship_limit)
            if not entries and not checkpoints and not broken:
                return sent
            batch = AuditBatch(node=self.store.node_id, entries=[e for _, e in entries],
                               checkpoints=[c for _, c in checkpoints], self_check=broken)
            ack = _decode_ack(await self.send("audit", _encode(batch)))
            if entries:
                await self.store.set_audit_cursor("shipped", entries[-1][0])
            if checkpoints:
                await self.store.set_audit_cursor("checkpoints_shipped", checkpoints[-1][0])
            sent += ack.entries
            broken = []  # reported once per shipment
            if len(entries) < self.config.ship_limit and len(checkpoints) < self.config.ship_limit:
                return sent


def decode_batch(body: bytes) -> AuditBatch:
    try:
        return _decode_batch(body)
    except msgspec.DecodeError as exc:
        raise MalformedBatchError(f"not an audit batch: {exc}") from None


async def receive(store: SqliteStore, batch: AuditBatch, *, now_ms: int) -> AuditAck:
    """The upstream's side: keep a batch from ``batch.node`` (already
    authenticated) and check what it adds. Entries and checkpoints of a node
    that is neither the sender nor below it refuse the whole batch."""
    sender = batch.node
    record = await store.node(sender)
    if record is None or record.retired_ms is not None or sender == store.node_id:
        raise UnknownNodeError(sender)
    allowed = {sender} | await store.descendants(sender)
    for where, items in (("entries", batch.entries), ("checkpoints", batch.checkpoints)):
        for i, item in enumerate(items):
            if item.node not in allowed:
                raise UnknownNodeError(item.node, f"$.{where}[{i}].node")
    differing = await store.collect_audit(batch.entries, batch.checkpoints)
    breaks = [ChainBreak(node=new.node, seq=new.seq, kind="diverged",
                         detail="sent again with other content than the copy collected before")
              for new, _ in differing]
    breaks += [ChainBreak(node=sender, seq=b.seq, kind="self_check", detail=f"{b.kind}: {b.detail}"[:300])
               for b in batch.self_check[:_BREAKS_REPORTED]]
    for node in sorted({e.node for e in batch.entries} | {c.node for c in batch.checkpoints}):
        breaks += await verify_new(store, node, new_checkpoints=[c for c in batch.checkpoints if c.node == node])
    new = await raise_alerts(store, breaks, now_ms, on_new=_log_break)
    return AuditAck(entries=len(batch.entries), checkpoints=len(batch.checkpoints), alerts=new)


def _log_break(b: ChainBreak) -> None:
    log.warning("audit.chain broken", extra={"node": b.node, "seq": b.seq, "kind": b.kind})
