"""Partner offboarding (PIPL Art. 21: an entrusted processor returns or deletes
the data when the contract ends), at HQ.

`begin` revokes everything the partner holds in one local write: the partner
leaves every customer's and campaign's ``partners``, its users are deleted
(their password hashes shredded), and the key records addressed to it (its
scope keys, its wraps of customers' data keys) are deleted. The node's scope
becomes empty from then on (`server.peer_scopes`), so on its next sync it purges
every row it holds, with their key records, and signs a purge receipt.
`progress` says whether that happened: HQ's record of what the node holds is
empty and its receipts verify. `retire` then forgets the node's public keys and
refuses it at the sync endpoints.

No web framework here: server/routes/offboarding.py and the CLI call it.
"""

from __future__ import annotations

from typing import Any

import msgspec

from server.config import SiteConfig
from server.purge_receipts import receipts
from sync.audit import AuditDraft
from sync.edits import Edit
from sync.store.sqlite import SqliteStore, wall_clock_ms

#: rows read per chunk while revoking
_CHUNK = 5_000


class NotAPartnerError(Exception):
    """Offboarding names a node that is not a partner in HQ's registry."""

    code = "not_a_partner"

    def __init__(self, node_id: str) -> None:
        self.node_id = node_id
        self.message = f"`{node_id}` is not a partner node in HQ's registry; only partners are offboarded"
        super().__init__(self.message)

    def details(self) -> dict[str, object]:
        return {"node": self.node_id}


class NotPurgedYetError(Exception):
    """Retiring a partner whose node has not yet confirmed its purge."""

    code = "not_purged_yet"

    def __init__(self, node_id: str, held: int) -> None:
        self.node_id = node_id
        self.held = held
        self.message = (f"`{node_id}` still holds {held} rows by HQ's record, or sent no verified receipt; "
                        "let it sync, then retire it")
        super().__init__(self.message)

    def details(self) -> dict[str, object]:
        return {"node": self.node_id, "held": self.held}


class Offboarding(msgspec.Struct, kw_only=True):
    """Where a partner's offboarding stands."""

    node: str
    began_ms: int | None
    #: customers and campaigns it was taken out of, users deleted, key records deleted (by `begin`)
    customers_revoked: int = 0
    campaigns_revoked: int = 0
    users_deleted: int = 0
    key_records_deleted: int = 0
    #: governed rows the node still holds, as HQ last confirmed
    rows_held: int
    #: its purge receipts, and whether every one verifies
    receipts: int
    receipts_verified: bool
    #: the node confirmed its purge: no row held, at least one receipt, all verified
    purged: bool
    retired_ms: int | None


async def _partner(store: SqliteStore, config: SiteConfig, node_id: str) -> None:
    entry = next((e for e in config.nodes if e.node_id == node_id), None)
    if entry is None or entry.role != "partner" or await store.node(node_id) is None:
        raise NotAPartnerError(node_id)


async def _rows_with(store: SqliteStore, collection: str, test: Any) -> list[dict[str, Any]]:
    out, after = [], ""
    while rows := await store.find_rows(collection, limit=_CHUNK, after=after):
        out += [r for r in rows if test(r)]
        after = rows[-1]["row_id"]
    return out


async def begin(store: SqliteStore, config: SiteConfig, node_id: str, *,
                audit: AuditDraft | None = None) -> Offboarding:
    """Revoke the partner's campaigns, customers, users and keys, and empty its
    scope; ``audit`` is committed with the first step (the node marked offboarding)."""
    await _partner(store, config, node_id)
    customers = await _rows_with(store, "customers", lambda r: node_id in r["partners"])
    campaigns = await _rows_with(store, "campaigns", lambda r: node_id in r["partners"])
    users = await _rows_with(store, "users", lambda r: r["site"] == node_id and not r["deleted"])
    keys = await _rows_with(store, "keys", lambda r: not r["deleted"] and (
        r["recipient"] == node_id or r["scope_group"] == node_id))
    edits = [Edit("customers", r["row_id"], "partners", "remove", node_id) for r in customers]
    edits += [Edit("campaigns", r["row_id"], "partners", "remove", node_id) for r in campaigns]
    edits += [Edit("users", r["row_id"], "deleted", "set", True) for r in users]
    edits += [Edit("keys", r["row_id"], "deleted", "set", True) for r in keys]
    await store.set_node_state(node_id, offboarding_ms=wall_clock_ms(), audit=audit)
    for i in range(0, len(edits), _CHUNK):
        await store.write_local(edits[i : i + _CHUNK])
    report = await progress(store, config, node_id)
    return msgspec.structs.replace(report, customers_revoked=len(customers), campaigns_revoked=len(campaigns),
                                   users_deleted=len(users), key_records_deleted=len(keys))


async def progress(store: SqliteStore, config: SiteConfig, node_id: str) -> Offboarding:
    await _partner(store, config, node_id)
    record = await store.node(node_id)
    assert record is not None
    held = len(await store.held_rows(node_id))
    signed = await receipts(store, node_id)
    verified = all(r.verified for r in signed)
    return Offboarding(
        node=node_id, began_ms=record.offboarding_ms, rows_held=held, receipts=len(signed),
        receipts_verified=verified, purged=record.offboarding_ms is not None and held == 0 and bool(signed) and verified,
        retired_ms=record.retired_ms,
    )


async def retire(store: SqliteStore, config: SiteConfig, node_id: str, *,
                 audit: AuditDraft | None = None) -> Offboarding:
    """Forget the node's public keys and refuse it at the sync endpoints, once its
    purge is confirmed (`NotPurgedYetError` before), with its audit entry."""
    state = await progress(store, config, node_id)
    if not state.purged:
        raise NotPurgedYetError(node_id, state.rows_held)
    if state.retired_ms is None:
        await store.set_node_state(node_id, retired_ms=wall_clock_ms(), audit=audit)
    return await progress(store, config, node_id)
