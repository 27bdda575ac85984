"""What an upstream sends a peer: a predicate over stored rows.

The upstream computes scope (DESIGN.md, Sync): a node receives only what its
scope admits. `PeerScope` covers key distribution: a scope key travels only to
the node it is wrapped for, a customer's data keys and the scope-key epochs only
to the nodes of their scope group that are granted their field class. A user row
travels only to the node of its site. The access work extends it to customers,
tasks and results.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import msgspec

from sync.schema import KeyRef

#: (collection, the row's stored field states by name; each state's [0] is its
#: canonical msgpack value) -> whether the peer may receive the row
RowFilter = Callable[[str, Mapping[str, Sequence[Any]]], bool]

_decode = msgspec.msgpack.decode
_decode_ref = msgspec.msgpack.Decoder(KeyRef).decode


def _value(doc: Mapping[str, Sequence[Any]], name: str) -> Any:
    entry = doc.get(name)
    return None if entry is None else _decode(entry[0])


class PeerScope(msgspec.Struct, frozen=True):
    """The scope of one downstream node.

    ``groups``: the scope groups it belongs to (None: all, as for a second HQ);
    ``classes``: the key classes its policy grants (PII field classes, ``index``).
    """

    node: str
    groups: frozenset[str] | None
    classes: frozenset[str]

    def admits(self, collection: str, doc: Mapping[str, Sequence[Any]]) -> bool:
        if collection == "users":  # a user signs in at the nodes of its site
            return self.groups is None or _value(doc, "site") == self.node
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
        return ref.field_class in self.classes
