"""Audit entries are kept for their own period (``retention.audit_days``), then
removed, chain by chain, up to a signed checkpoint: the chain is anchored there
(`SqliteStore.prune_audit`), so what is kept still verifies from a point its
node signed, and the removal cannot be told from a gap only because the anchor
names it. The removal is itself an audit entry. No web framework here."""

from __future__ import annotations

from server.audit_log import SYSTEM, AuditLog
from sync.store.sqlite import SqliteStore


async def prune_audit(store: SqliteStore, log: AuditLog, *, keep_ms: int, now_ms: int) -> dict[str, int]:
    """Remove every chain's entries older than ``keep_ms`` up to the last signed
    checkpoint among them; returns how many per node (recorded in one entry)."""
    cutoff = now_ms - keep_ms
    removed: dict[str, int] = {}
    for node in await store.audit_nodes():
        anchor = await store.audit_anchor(node)
        checkpoints = [cp for cp in await store.audit_checkpoints(node)
                       if anchor is None or cp.seq > anchor[0]]
        through = None
        for cp in checkpoints:  # in seq order: the last one whose entry is past its period
            held = await store.audit_chain(node, after_seq=cp.seq - 1, limit=1)
            if not held or held[0].seq != cp.seq or held[0].hash != cp.hash or held[0].at_ms >= cutoff:
                break
            through = cp
        if through is not None:
            removed[node] = await store.prune_audit(node, through.seq, through.hash, now_ms)
    if removed:
        await log.record(SYSTEM, "retention_purge", collection="audit", counts=removed)
    return removed
