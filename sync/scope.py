"""What an upstream sends a peer, and what it takes from it: a predicate over stored rows.

The upstream computes scope (DESIGN.md, Sync): a node receives only what its
scope admits. `PeerScope` holds the peer's scope as the upstream's policy gives
it, as plain data and one row predicate, so this library stays free of policy:

* key distribution: a scope key travels only to the node it is wrapped for, a
  customer's data keys and the scope-key epochs only to the nodes of their scope
  group that are granted their field class. A user row travels only to the node
  of its site.
* row scope (``rows``): for the collections it governs, the rows the peer may
  hold, decided on the values of a few fields (``reads``); and of those rows
  only the ``fields`` present at the peer (the others are absent there, never
  null). A row entering the scope is sent whole, a row leaving it is purged at
  the peer (`sync.changes.RowDrop`).
* writes (``writable``): the fields of a governed row the peer may change; any
  other change it pushes is refused at merge and answered so the peer converges
  back.
* children (`sync.schema.PARENTS`, the consents of a customer): a governed
  child row is in the scope exactly when its parent row is (`admits_child`),
  whatever its own fields; the store looks the parent up, and a child follows
  its parent into and out of the peer's copy.

``fingerprint`` names the scope's current shape; when it changes (a policy
reload, a new contract) the upstream rescans every row for the peer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import msgspec

from sync.merge import materialize
from sync.schema import COLLECTIONS, PARENTS, KeyRef

#: (collection, the row's stored field states by name; each state's [0] is its
#: canonical msgpack value) -> whether the peer may receive the row
RowFilter = Callable[[str, Mapping[str, Sequence[Any]]], bool]
#: (collection, the plain values of the fields the rule reads) -> whether the row is in scope
RowRule = Callable[[str, Mapping[str, Any]], bool]

_decode = msgspec.msgpack.decode
_decode_ref = msgspec.msgpack.Decoder(KeyRef).decode


def _value(doc: Mapping[str, Sequence[Any]], name: str) -> Any:
    entry = doc.get(name)
    return None if entry is None else _decode(entry[0])


def rule_values(collection: str, doc: Mapping[str, Sequence[Any]], names: Sequence[str]) -> dict[str, Any]:
    """The plain values of ``names`` in a stored row (absent fields: their default)."""
    fields = COLLECTIONS[collection].fields
    out: dict[str, Any] = {}
    for name in names:
        spec = fields[name]
        entry = doc.get(name)
        out[name] = spec.default if entry is None else materialize(spec, entry[0])
    return out


def parent_id(collection: str, doc: Mapping[str, Sequence[Any]]) -> str | None:
    """The row id of the parent of a child row (its stored states), if it names one."""
    link = PARENTS.get(collection)
    if link is None:
        return None
    value = _value(doc, link[1])
    return value if isinstance(value, str) else None


def _emptied(doc: Mapping[str, Sequence[Any]]) -> bool:
    """A data-key record whose wrap HQ emptied (the group lost the customer) and
    that is not deleted: the group purged its copy, there is nothing to send."""
    wrap, deleted = doc.get("wrap"), doc.get("deleted")
    return (wrap is None or _decode(wrap[0]) is None) and (deleted is None or not _decode(deleted[0]))


class PeerScope(msgspec.Struct, frozen=True, kw_only=True):
    """The scope of one downstream node.

    ``groups``: the scope groups it belongs to (None: all, as for a second HQ);
    ``classes``: the key classes its policy grants (PII field classes, ``index``);
    ``rows``: the row rule of the collections it governs (``reads`` names the
    fields the rule decides on, per collection; None: every row of every
    collection); ``fields``/``writable``: per governed collection, the fields
    present at the peer and those it may change.
    """

    node: str
    groups: frozenset[str] | None
    classes: frozenset[str]
    rows: RowRule | None = None
    reads: Mapping[str, tuple[str, ...]] = {}
    fields: Mapping[str, frozenset[str]] = {}
    writable: Mapping[str, frozenset[str]] = {}
    fingerprint: str = ""
    #: a node being offboarded: it receives no customer's data key (only the deletion of its scope keys)
    governs_nothing: bool = False

    def governs(self, collection: str) -> bool:
        """Whether the row rule decides which rows of ``collection`` the peer holds."""
        return self.rows is not None and collection in self.reads

    def admits_row(self, collection: str, doc: Mapping[str, Sequence[Any]]) -> bool:
        """Whether a governed row (its stored states) is in the peer's scope. A
        child row is decided by its parent: ask `admits_child`."""
        assert self.rows is not None
        if collection in PARENTS:
            raise TypeError(f"a `{collection}` row is in scope when its parent is: use admits_child")
        return self.rows(collection, rule_values(collection, doc, self.reads[collection]))

    def admits_child(self, collection: str, parent: Mapping[str, Sequence[Any]] | None) -> bool:
        """Whether a governed child row (of `sync.schema.PARENTS`) is in the peer's
        scope, given its parent row's stored states (None or empty: the parent is
        not held here, and neither is the child for the peer)."""
        if not parent:
            return False
        return self.admits(PARENTS[collection][0], parent)

    def admits(self, collection: str, doc: Mapping[str, Sequence[Any]]) -> bool:
        if self.governs(collection):
            return self.admits_row(collection, doc)
        if collection == "users":  # a user signs in at the nodes of its site
            return self.groups is None or _value(doc, "site") == self.node
        if collection == "purge_receipts":  # evidence for HQ: travels up only
            return self.groups is None
        if collection != "keys":
            return True
        entry = doc.get("ref")
        if entry is None:
            return self.groups is None  # its identity has not arrived: only a peer taking everything
        ref = _decode_ref(entry[0])
        if ref.kind == "scope_key":
            return ref.recipient == self.node
        if self.groups is not None and ref.scope_group not in self.groups and ref.scope_group != "*":
            return False
        if ref.kind == "data_key" and self.groups is not None and (self.governs_nothing or _emptied(doc)):
            return False
        return ref.field_class in self.classes

    def present(self, collection: str) -> frozenset[str] | None:
        """The fields of ``collection`` present at the peer (None: all of them)."""
        return self.fields.get(collection) if self.governs(collection) else None

    def may_write(self, collection: str, field: str) -> bool:
        return not self.governs(collection) or field in self.writable.get(collection, ())
