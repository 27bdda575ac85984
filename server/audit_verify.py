"""Checking audit chains held in a store: this node's own, and those collected
from the nodes below (at HQ: every node's).

`verify_chain` reads one chain whole, from its anchor (or the genesis) to its
last entry, and checks every hash, every link, every signed checkpoint against
the entry it names and against the node's key in the registry. `verify_new`
does the same from where the last check stopped, for the entries that have just
arrived; `raise_alerts` records each break as an alert, once. No web framework here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import msgspec

from crypto.errors import SignatureError
from crypto.identity import NodeIdentity, verify_signature
from sync.audit import AuditCheckpoint, ChainBreak, ChainWalker, checkpoint_bytes
from sync.store.sqlite import SqliteStore

_PAGE = 10_000


class ChainReport(msgspec.Struct, kw_only=True):
    """What a check of one node's chain found."""

    node: str
    #: the retained chain: entries held, first and last seq (0 when none)
    entries: int = 0
    first_seq: int = 0
    last_seq: int = 0
    checkpoints: int = 0
    #: checkpoints whose signature verified; those signed with a key this store does not hold
    signatures_verified: int = 0
    signatures_unverifiable: int = 0
    #: every break found, first first; empty when the chain is whole
    breaks: list[ChainBreak] = []

    @property
    def ok(self) -> bool:
        return not self.breaks


def sign_checkpoint(identity: NodeIdentity, seq: int, hash_: bytes, at_ms: int) -> AuditCheckpoint:
    """This node's signature of its chain head."""
    signature = identity.sign(checkpoint_bytes(identity.node_id, seq, hash_, at_ms, identity.key_version))
    return AuditCheckpoint(node=identity.node_id, seq=seq, hash=hash_, at_ms=at_ms,
                           key_version=identity.key_version, signature=signature)


async def _signing_keys(store: SqliteStore) -> dict[str, tuple[int, bytes]]:
    return {r.node_id: (r.key_version, r.sign_pub) for r in await store.nodes()
            if r.sign_pub is not None and r.key_version is not None}


def _signature_break(cp: AuditCheckpoint, keys: dict[str, tuple[int, bytes]]) -> ChainBreak | None | bool:
    """A break when the checkpoint's signature does not verify; True when it
    does; None when this store holds no key of that version to check it with."""
    known = keys.get(cp.node)
    if known is None or known[0] != cp.key_version:
        return None
    try:
        verify_signature(known[1], cp.signature, checkpoint_bytes(cp.node, cp.seq, cp.hash, cp.at_ms, cp.key_version),
                         f"audit checkpoint {cp.seq} of {cp.node}")
    except SignatureError:
        return ChainBreak(node=cp.node, seq=cp.seq, kind="bad_signature",
                          detail="the checkpoint's signature does not verify with the node's registered key")
    return True


async def verify_chain(store: SqliteStore, node: str, *, keys: dict[str, tuple[int, bytes]] | None = None,
                       own_key: tuple[int, bytes] | None = None) -> ChainReport:
    """Check ``node``'s whole retained chain as this store holds it.
    ``own_key``: the (version, public key) to check the node's checkpoints with
    when the registry here does not hold it (a node checking itself)."""
    keys = dict(keys if keys is not None else await _signing_keys(store))
    if own_key is not None:
        keys.setdefault(node, own_key)
    report = ChainReport(node=node)
    checkpoints = {cp.seq: cp for cp in await store.audit_checkpoints(node)}
    report.checkpoints = len(checkpoints)
    for cp in checkpoints.values():
        signed = _signature_break(cp, keys)
        if isinstance(signed, ChainBreak):
            report.breaks.append(signed)
        elif signed is True:
            report.signatures_verified += 1
        else:
            report.signatures_unverifiable += 1
    anchor = await store.audit_anchor(node)
    walker = ChainWalker(node) if anchor is None else ChainWalker(node, anchor[0], anchor[1])
    if anchor is not None:
        attested = checkpoints.get(anchor[0])
        if attested is None or attested.hash != anchor[1]:
            report.breaks.append(ChainBreak(node=node, seq=anchor[0], kind="diverged",
                                            detail="the chain's anchor is not a signed checkpoint"))
    after = walker.seq
    while True:
        page = await store.audit_chain(node, after_seq=after, limit=_PAGE)
        for entry in page:
            broken = walker.step(entry)
            if broken is not None:
                report.breaks.append(broken)
            cp = checkpoints.get(entry.seq)
            if cp is not None and cp.hash != entry.hash:
                report.breaks.append(ChainBreak(node=node, seq=entry.seq, kind="diverged",
                                                detail=f"differs from the checkpoint signed at {cp.at_ms}"))
            report.entries += 1
            report.first_seq = report.first_seq or entry.seq
        if len(page) < _PAGE:
            break
        after = page[-1].seq
    report.last_seq = walker.seq if report.entries else 0
    beyond = [seq for seq in checkpoints if seq > walker.seq]
    if beyond:
        report.breaks.append(ChainBreak(node=node, seq=walker.seq + 1, kind="truncated",
                                        detail=f"a checkpoint names entry {max(beyond)}; the chain ends at {walker.seq}"))
    report.breaks.sort(key=lambda b: b.seq)
    return report


async def verify_new(store: SqliteStore, node: str, *, keys: dict[str, tuple[int, bytes]] | None = None,
                     new_checkpoints: Sequence[AuditCheckpoint] = ()) -> list[ChainBreak]:
    """Check ``node``'s entries that arrived since the last check, and the
    checkpoints just received, and move the check on; returns the breaks found
    (for `raise_alerts`). Checkpoints beyond the entries held wait for them."""
    keys = keys if keys is not None else await _signing_keys(store)
    breaks: list[ChainBreak] = []
    for cp in new_checkpoints:
        signed = _signature_break(cp, keys)
        if isinstance(signed, ChainBreak):
            breaks.append(signed)
    done = await store.audit_verified(node)
    if done is None:
        anchor = await store.audit_anchor(node)
        walker = ChainWalker(node) if anchor is None else ChainWalker(node, anchor[0], anchor[1])
    else:
        walker = ChainWalker(node, done[0], done[1])
    checkpoints = {cp.seq: cp for cp in await store.audit_checkpoints(node, after_seq=walker.seq)}
    for cp in new_checkpoints:  # one for an entry checked before
        if cp.seq <= walker.seq:
            held = await store.audit_chain(node, after_seq=cp.seq - 1, limit=1)
            if held and held[0].seq == cp.seq and held[0].hash != cp.hash:
                breaks.append(ChainBreak(node=node, seq=cp.seq, kind="diverged",
                                         detail="a signed checkpoint differs from the entry collected before"))
    start = walker.seq
    while True:
        page = await store.audit_chain(node, after_seq=walker.seq, limit=_PAGE)
        for entry in page:
            broken = walker.step(entry)
            if broken is not None:
                breaks.append(broken)
            cp = checkpoints.get(entry.seq)
            if cp is not None and cp.hash != entry.hash:
                breaks.append(ChainBreak(node=node, seq=entry.seq, kind="diverged",
                                         detail=f"differs from the checkpoint signed at {cp.at_ms}"))
        if len(page) < _PAGE:
            break
    if walker.seq > start:
        await store.set_audit_verified(node, walker.seq, walker.head)
    return breaks


async def raise_alerts(store: SqliteStore, breaks: list[ChainBreak], now_ms: int,
                       on_new: Callable[[ChainBreak], None] | None = None) -> int:
    """Record each break as an alert (a break already raised is not raised
    again); returns how many were new."""
    new = 0
    for b in breaks:
        if await store.add_audit_alert(b.node, b.seq, b.kind, b.detail, now_ms):
            new += 1
            if on_new is not None:
                on_new(b)
    return new
