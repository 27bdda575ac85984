"""The scope HQ serves each node below it: the access policy turned into a
`sync.scope.PeerScope` (rows, fields, writes and keys), for the responder.

A registry entry (``[[nodes]]`` in HQ's site config) gives the node's kind, and
for a phone its user; a partner's contracted campaigns are those its entry lists
and those whose ``partners`` name it in the ``campaigns`` collection (so
assigning a campaign to a partner moves its tasks there by ordinary sync); the policy
(`server.policy.Policy.node_scope`) says what a node of that kind holds. The
fingerprint changes whenever any of it does, so the responder then weighs every
row for the node again (rows that entered its scope arrive, rows that left it
are purged).
"""

from __future__ import annotations

import hashlib

import msgspec

from server.config import NodeEntry, SiteConfig
from server.key_authority import grants
from server.policy import GOVERNED, NodeScope, Policy
from sync.scope import PeerScope
from sync.store.sqlite import SqliteStore

_encode = msgspec.msgpack.Encoder(order="deterministic").encode


def peer_scope(entry: NodeEntry, policy: Policy, *, offboarding: bool = False,
               campaigns: frozenset[str] = frozenset()) -> PeerScope:
    """What HQ sends the node of ``entry`` and accepts from it (nothing at all for a
    node being offboarded: it purges every row it holds). ``campaigns``: the
    campaigns whose ``partners`` name the node, besides those its entry lists."""
    scope = policy.node_scope(entry, campaigns=frozenset(entry.campaigns) | campaigns)
    classes = grants(entry, policy, scope)
    if offboarding:  # the deletion of its scope keys still reaches it, so it destroys them
        return PeerScope(
            node=entry.node_id, groups=frozenset({entry.node_id}), classes=classes, rows=_nothing,
            reads={c: () for c in GOVERNED}, fields={c: frozenset() for c in GOVERNED},
            writable={c: frozenset() for c in GOVERNED}, fingerprint="offboarding", governs_nothing=True,
        )
    if scope.rows == "all":  # a node holding every row (a second HQ): no row rule
        return PeerScope(node=entry.node_id, groups=frozenset({entry.node_id}), classes=classes,
                         fingerprint=_fingerprint(scope, classes))
    return PeerScope(
        node=entry.node_id,
        groups=frozenset({entry.node_id}),
        classes=classes,
        rows=scope.admits,
        reads={c: scope.reads.get(c, ()) for c in GOVERNED},
        fields={c: scope.fields.get(c, frozenset()) for c in GOVERNED},
        writable={c: scope.writable.get(c, frozenset()) for c in GOVERNED},
        fingerprint=_fingerprint(scope, classes),
    )


def scope_for(config: SiteConfig, policy: Policy, node_id: str, *, offboarding: bool = False,
              campaigns: frozenset[str] = frozenset()) -> PeerScope | None:
    """The scope HQ serves to a downstream node (None: not in the registry)."""
    for entry in config.nodes:
        if entry.node_id == node_id:
            return peer_scope(entry, policy, offboarding=offboarding, campaigns=campaigns)
    return None


async def contracted_campaigns(store: SqliteStore) -> dict[str, frozenset[str]]:
    """node -> the live campaigns whose ``partners`` name it (a partner's contract,
    as HQ writes it in the ``campaigns`` collection)."""
    out: dict[str, set[str]] = {}
    after = ""
    while rows := await store.find_rows("campaigns", deleted=False, limit=5_000, after=after):
        for row in rows:
            for node in row["partners"]:
                out.setdefault(node, set()).add(row["row_id"])
        after = rows[-1]["row_id"]
    return {node: frozenset(ids) for node, ids in out.items()}


def _nothing(collection: str, values: object) -> bool:
    return False


def _fingerprint(scope: NodeScope, classes: frozenset[str]) -> str:
    shape = [scope.kind, scope.rows, sorted(scope.campaigns), scope.user, sorted(classes),
             {c: sorted(f) for c, f in scope.fields.items()}, {c: sorted(f) for c, f in scope.writable.items()}]
    return hashlib.sha256(_encode(shape)).hexdigest()[:16]
