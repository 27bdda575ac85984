"""Audit entries and alerts as the API and the export show them."""

from __future__ import annotations

import msgspec

from sync.audit import AuditEntry


class EntryView(msgspec.Struct, kw_only=True):
    """One audit entry: ids, names and codes only."""

    node: str
    seq: int
    at_ms: int
    actor: str
    role: str | None
    action: str
    collection: str
    rows: list[str]
    fields: list[str]
    shown: list[str]
    masked: list[str]
    purpose: str | None
    reference: str | None
    peer: str | None
    counts: dict[str, int]
    outcome: str
    status: int
    reason: str | None
    hash: str


class EntryPage(msgspec.Struct, kw_only=True):
    entries: list[EntryView]
    #: pass as ``after`` for the next page; null when this is the last
    next: str | None = None


class AlertView(msgspec.Struct, kw_only=True):
    alert_id: int
    node: str
    seq: int
    kind: str
    detail: str
    at_ms: int


def entry_view(e: AuditEntry) -> EntryView:
    return EntryView(node=e.node, seq=e.seq, at_ms=e.at_ms, actor=e.actor, role=e.role, action=e.action,
                     collection=e.collection, rows=list(e.rows), fields=list(e.fields), shown=list(e.shown),
                     masked=list(e.masked), purpose=e.purpose, reference=e.reference, peer=e.peer,
                     counts=dict(e.counts), outcome=e.outcome, status=e.status, reason=e.reason, hash=e.hash.hex())
