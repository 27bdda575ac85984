"""Purge receipts: a node's signed word that it deleted rows that left its scope.

When an upstream tells a node to purge rows (`sync.changes.RowDrop`), the node
deletes them with their key records and, in the same transaction, writes a
``purge_receipts`` row naming them (ids only), signed with its Ed25519
identity. Receipts travel up and stay at HQ as evidence that an entrusted
processor deleted what it no longer may hold (PIPL Art. 21); `verify_receipt`
checks one against the node's public key in HQ's registry.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import msgspec

from crypto.errors import SignatureError
from crypto.identity import NodeIdentity, verify_signature
from sync.edits import Edit
from sync.ids import new_ulid
from sync.store import PurgeHook
from sync.store.sqlite import SqliteStore

#: what a receipt's signature covers, so it can never pass for another signed message
DOMAIN = "outpost.purge-receipt.v1"

_encode = msgspec.msgpack.Encoder(order="deterministic").encode


class ReceiptView(msgspec.Struct, kw_only=True):
    """A purge receipt as HQ holds it, with the outcome of checking its signature."""

    row_id: str
    node: str
    purged_at_ms: int
    rows: list[str]
    keys_purged: int
    key_version: int
    #: the signature verifies against the node's registered key of that version
    verified: bool


def signed_bytes(node: str, purged_at_ms: int, rows: list[str], keys_purged: int, key_version: int) -> bytes:
    return _encode([DOMAIN, node, purged_at_ms, sorted(rows), keys_purged, key_version])


def purge_hook(identity_of: Callable[[], NodeIdentity], now_ms: Callable[[], int]) -> PurgeHook:
    """The replicator's hook: the edits of one receipt for the rows purged, signed
    with the node's current identity (``identity_of``)."""

    def receipt(rows: list[str], keys_purged: int) -> list[Edit]:
        identity = identity_of()
        at = now_ms()
        row_id = new_ulid(at, os.urandom(10))
        signature = identity.sign(signed_bytes(identity.node_id, at, rows, keys_purged, identity.key_version))
        values = {"node": identity.node_id, "purged_at_ms": at, "rows": sorted(rows), "keys_purged": keys_purged,
                  "key_version": identity.key_version, "signature": signature}
        return [Edit("purge_receipts", row_id, name, "set", value) for name, value in values.items()]

    return receipt


def verify_receipt(row: dict[str, Any], sign_pub: bytes | None) -> bool:
    """Whether a stored receipt's signature verifies against ``sign_pub``."""
    if sign_pub is None or row.get("signature") is None or row.get("node") is None:
        return False
    data = signed_bytes(row["node"], row["purged_at_ms"] or 0, list(row["rows"] or []), row["keys_purged"],
                        row["key_version"] or 0)
    try:
        verify_signature(sign_pub, row["signature"], data, f"purge receipt {row['row_id']}")
    except SignatureError:
        return False
    return True


async def receipts(store: SqliteStore, node: str | None = None) -> list[ReceiptView]:
    """The purge receipts held here (of one node, or all), oldest first, each verified
    against the signing key in this node's registry."""
    rows = await store.find_rows("purge_receipts", **({"node": node} if node else {}), limit=100_000)
    keys = {r.node_id: r for r in await store.nodes()}
    out = []
    for row in sorted(rows, key=lambda r: (r["purged_at_ms"] or 0, r["row_id"])):
        record = keys.get(row["node"])
        sign_pub = record.sign_pub if record is not None and record.key_version == row["key_version"] else None
        out.append(ReceiptView(
            row_id=row["row_id"], node=row["node"] or "", purged_at_ms=row["purged_at_ms"] or 0,
            rows=list(row["rows"] or []), keys_purged=row["keys_purged"], key_version=row["key_version"] or 0,
            verified=verify_receipt(row, sign_pub),
        ))
    return out
