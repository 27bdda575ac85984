"""Audit entries as SQL rows and back (the table is `sync.store.ddl.AUDIT_TABLES`)."""

from __future__ import annotations

import json
from typing import Any

from sync.audit import AuditCheckpoint, AuditEntry

COLUMNS = (
    "node", "seq", "at_ms", "actor", "role", "action", "collection", "rows", "fields", "shown", "masked", "purpose",
    "reference", "peer", "counts", "outcome", "status", "reason", "prev", "hash",
)
INSERT = f"INSERT INTO audit_entries ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
#: an entry already there keeps its place: the collector compares what it ignored
INSERT_NEW = INSERT.replace("INSERT INTO", "INSERT OR IGNORE INTO", 1)
SELECT = f"SELECT rowid, {', '.join(COLUMNS)} FROM audit_entries"
#: the same columns of ``audit_entries e`` in a join
SELECT_E = f"SELECT e.rowid, {', '.join('e.' + c for c in COLUMNS)}"
ROWS_INSERT = "INSERT OR IGNORE INTO audit_rows (row_id, node, seq) VALUES (?, ?, ?)"
CHECKPOINT_COLUMNS = ("node", "seq", "hash", "at_ms", "key_version", "signature")
CHECKPOINT_INSERT = (
    f"INSERT OR IGNORE INTO audit_checkpoints ({', '.join(CHECKPOINT_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(CHECKPOINT_COLUMNS))})"
)
CHECKPOINT_SELECT = f"SELECT {', '.join(CHECKPOINT_COLUMNS)}, rowid FROM audit_checkpoints"


def _names(text: str) -> tuple[str, ...]:
    return tuple(text.split(",")) if text else ()


def audit_params(e: AuditEntry) -> tuple[Any, ...]:
    return (e.node, e.seq, e.at_ms, e.actor, e.role, e.action, e.collection, ",".join(e.rows), ",".join(e.fields),
            ",".join(e.shown), ",".join(e.masked), e.purpose, e.reference, e.peer, json.dumps(e.counts, sort_keys=True) if e.counts else "",
            e.outcome, e.status, e.reason, e.prev, e.hash)


def subject_params(e: AuditEntry) -> list[tuple[str, str, int]]:
    return [(row_id, e.node, e.seq) for row_id in e.rows]


def entry_of(r: Any) -> AuditEntry:
    """An entry from a row of `SELECT` (the rowid first). A row edited in place
    comes back as it is now, for the chain check to judge."""
    return AuditEntry(
        node=r[1], seq=r[2], at_ms=r[3], actor=r[4], role=r[5], action=r[6], collection=r[7], rows=_names(r[8]),
        fields=_names(r[9]), shown=_names(r[10]), masked=_names(r[11]), purpose=r[12], reference=r[13], peer=r[14],
        counts=json.loads(r[15]) if r[15] else {}, outcome=r[16], status=r[17], reason=r[18], prev=r[19], hash=r[20],
    )


def checkpoint_params(c: AuditCheckpoint) -> tuple[Any, ...]:
    return (c.node, c.seq, c.hash, c.at_ms, c.key_version, c.signature)


def checkpoint_of(r: Any) -> AuditCheckpoint:
    return AuditCheckpoint(node=r[0], seq=r[1], hash=r[2], at_ms=r[3], key_version=r[4], signature=r[5])
