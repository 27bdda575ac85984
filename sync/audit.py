"""The audit log's records and its hash chain: pure, no I/O.

Every node appends `AuditEntry` records to its own chain: entry ``seq`` (1, 2,
...) carries ``prev``, the hash of entry ``seq - 1`` (for the first, a genesis
hash bound to the node id), and ``hash``, SHA-256 over a domain tag, ``prev``
and the canonical msgpack of every other field. Changing, removing, reordering
or inserting an entry therefore breaks the chain at that point: its own hash no
longer matches, or the next entry's ``prev`` does not, or a sequence number is
missing.

A node signs its chain head from time to time: an `AuditCheckpoint` is an
Ed25519 signature over (node, seq, hash, time, key version). Someone who can
rewrite the database can recompute every hash after an edit, but cannot sign
the new head; and HQ, which collects every node's chain by sync, keeps the
copies it has and compares.

Entries hold ids, field names and codes only, never a value of personal
information (not even masked): ``actor`` is a user id, ``operator``, ``system``
or ``anonymous``; ``rows`` row ids; ``fields`` the names of the fields acted on
(written, revealed, looked up by), ``shown`` and ``masked`` those the answer
showed in full and masked;
``purpose`` and ``reason`` codes from fixed lists; ``reference`` a row id;
``peer`` a node id; ``counts`` named integers.

>>> draft = AuditDraft(at_ms=1, actor="operator", action="read", collection="customers",
...                    rows=("01J00000000000000000000000",), shown=("name",), status=200)
>>> first = chain_entry("branch-a", 1, genesis("branch-a"), draft)
>>> second = chain_entry("branch-a", 2, first.hash, draft)
>>> first_break("branch-a", [first, second]) is None
True
>>> edited = msgspec.structs.replace(first, shown=("phone",))
>>> first_break("branch-a", [edited, second]).kind
'edited'
>>> first_break("branch-a", [second]).kind
'gap'
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Literal

import msgspec

DOMAIN = b"outpost-audit-v1\x00"
CHECKPOINT_DOMAIN = b"outpost-audit-checkpoint-v1\x00"
HASH_BYTES = 32

Outcome = Literal["ok", "refused", "failed"]
#: how a chain can be broken, as verification names it
BreakKind = Literal[
    "edited",        # the entry's hash does not match its content
    "broken_link",   # its ``prev`` is not the hash of the entry before (removed, reordered, inserted)
    "gap",           # a sequence number is missing
    "truncated",     # a signed checkpoint names an entry the chain no longer has
    "bad_signature", # a checkpoint whose signature does not verify
    "diverged",      # a copy differs from the one collected before, or from a signed checkpoint
    "foreign",       # an entry of another node in this node's chain
    "self_check",    # the node reported a break in its own chain
]


class AuditDraft(msgspec.Struct, frozen=True, kw_only=True):
    """What happened, before the store numbers and chains it."""

    at_ms: int
    actor: str
    role: str | None = None
    action: str
    collection: str = ""
    rows: tuple[str, ...] = ()
    fields: tuple[str, ...] = ()
    shown: tuple[str, ...] = ()
    masked: tuple[str, ...] = ()
    purpose: str | None = None
    reference: str | None = None
    peer: str | None = None
    counts: dict[str, int] = {}
    outcome: Outcome = "ok"
    status: int = 200
    reason: str | None = None


class AuditEntry(AuditDraft, frozen=True, kw_only=True):
    """One link of a node's chain: a numbered `AuditDraft` with its hashes."""

    node: str
    seq: int
    prev: bytes
    hash: bytes

    @property
    def row_id(self) -> str | None:
        """The row the entry names, when it names one (most do)."""
        return self.rows[0] if self.rows else None


class AuditCheckpoint(msgspec.Struct, frozen=True, kw_only=True):
    """A node's signed statement that entry ``seq`` of its chain has ``hash``."""

    node: str
    seq: int
    hash: bytes
    at_ms: int
    key_version: int
    signature: bytes


class ChainBreak(msgspec.Struct, frozen=True, kw_only=True):
    """The first bad place in a chain: which node, which entry, what is wrong."""

    node: str
    seq: int
    kind: BreakKind
    detail: str = ""


_encoder = msgspec.msgpack.Encoder(order="sorted")
_CONTENT = tuple(f for f in AuditEntry.__struct_fields__ if f not in ("prev", "hash"))


def genesis(node: str) -> bytes:
    """The ``prev`` of a node's first entry."""
    return hashlib.sha256(DOMAIN + b"genesis\x00" + node.encode()).digest()


def entry_hash(entry: AuditEntry) -> bytes:
    """The hash ``entry`` should carry, from its content and ``prev``."""
    content = _encoder.encode(tuple(getattr(entry, f) for f in _CONTENT))
    return hashlib.sha256(DOMAIN + entry.prev + content).digest()


def chain_entry(node: str, seq: int, prev: bytes, draft: AuditDraft) -> AuditEntry:
    """Number ``draft`` as entry ``seq`` of ``node``'s chain after a head of hash ``prev``."""
    fields = msgspec.structs.asdict(draft)
    fields["counts"] = dict(sorted(draft.counts.items()))
    unhashed = AuditEntry(node=node, seq=seq, prev=prev, hash=b"", **fields)
    return msgspec.structs.replace(unhashed, hash=entry_hash(unhashed))


def checkpoint_bytes(node: str, seq: int, hash_: bytes, at_ms: int, key_version: int) -> bytes:
    """What a checkpoint's signature covers."""
    return CHECKPOINT_DOMAIN + _encoder.encode((node, seq, hash_, at_ms, key_version))


class ChainWalker:
    """Checks a node's chain one entry at a time, in order, from a known head
    (``seq`` and hash of the entry before the first one it will see)."""

    __slots__ = ("node", "seq", "head")

    def __init__(self, node: str, seq: int = 0, head: bytes | None = None) -> None:
        self.node = node
        #: the last entry checked, and its hash
        self.seq = seq
        self.head = genesis(node) if head is None else head

    def step(self, entry: AuditEntry) -> ChainBreak | None:
        """Check the next entry; it becomes the head either way, so a walk can go
        on past a break and name each one once."""
        broken = self._check(entry)
        self.seq, self.head = entry.seq, entry.hash
        return broken

    def _check(self, entry: AuditEntry) -> ChainBreak | None:
        if entry.node != self.node:
            return ChainBreak(node=self.node, seq=entry.seq, kind="foreign", detail=f"entry of {entry.node}")
        if entry.seq != self.seq + 1:
            kind: BreakKind = "gap" if entry.seq > self.seq + 1 else "broken_link"
            return ChainBreak(node=self.node, seq=self.seq + 1, kind=kind,
                              detail=f"expected entry {self.seq + 1}, found {entry.seq}")
        if entry_hash(entry) != entry.hash:
            return ChainBreak(node=self.node, seq=entry.seq, kind="edited", detail="hash does not match content")
        if entry.prev != self.head:
            return ChainBreak(node=self.node, seq=entry.seq, kind="broken_link",
                              detail=f"prev is not the hash of entry {self.seq}")
        return None


def first_break(node: str, entries: Iterable[AuditEntry], *, seq: int = 0, head: bytes | None = None) -> ChainBreak | None:
    """The first break in ``entries`` (in sequence order) after the head
    (``seq``, ``head``; the genesis by default), or None."""
    walker = ChainWalker(node, seq, head)
    for entry in entries:
        broken = walker.step(entry)
        if broken is not None:
            return broken
    return None


class AuditBatch(msgspec.Struct, frozen=True, kw_only=True):
    """What a node sends its upstream after a sync round: the entries and
    checkpoints it holds that it has not sent yet (its own and those collected
    from below), and the result of its last check of its own chain."""

    node: str
    entries: list[AuditEntry] = []
    checkpoints: list[AuditCheckpoint] = []
    #: the breaks the node's last check found in its own chain (first first, at most 100)
    self_check: list[ChainBreak] = []


class AuditAck(msgspec.Struct, frozen=True, kw_only=True):
    """The upstream kept the batch; ``alerts``: breaks it raised on it."""

    entries: int
    checkpoints: int
    alerts: int
