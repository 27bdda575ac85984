"""Local edits: what a user's write at this node turns into.

An `Edit` names one field and one operation. `edit_state` turns it, with the
field's current state and the stamp of the write, into the new field state this
node stores and replicates. It is pure; the store calls it inside its write
transaction.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from sync.errors import SyncError
from sync.merge import (
    FieldState,
    counter_add,
    decode_set,
    encode_set,
    encode_value,
    set_add,
    set_members,
    set_remove,
)
from sync.schema import COLLECTIONS, FieldSpec

EditOp = Literal["set", "add", "remove", "increment"]


class Edit(msgspec.Struct, frozen=True):
    """One operation on one field of one row, made at this node."""

    collection: str
    row_id: str
    field: str
    op: EditOp = "set"
    value: Any = None


class InvalidEditError(SyncError):
    """A local edit breaks the schema or its field's merge type."""

    code = "invalid_edit"

    def __init__(self, collection: str, row_id: str, field: str, reason: str) -> None:
        self.collection = collection
        self.row_id = row_id
        self.field = field
        self.reason = reason
        super().__init__(f"Cannot edit `{collection}.{field}` of row `{row_id}`: {reason}")

    def details(self) -> dict[str, object]:
        return {"collection": self.collection, "row_id": self.row_id, "field": self.field}


def spec_of(edit: Edit) -> FieldSpec:
    collection = COLLECTIONS.get(edit.collection)
    spec = None if collection is None else collection.fields.get(edit.field)
    if spec is None:
        raise InvalidEditError(edit.collection, edit.row_id, edit.field, "no such field")
    return spec


def _checked(spec: FieldSpec, edit: Edit, value: Any) -> bytes:
    """Canonical bytes of ``value``, validated against the field's wire type."""
    try:
        raw = encode_value(value)
        return encode_value(spec.decoder.decode(raw))
    except (msgspec.ValidationError, msgspec.DecodeError, TypeError) as exc:
        reason = str(exc).split(" - at ")[0]
        raise InvalidEditError(edit.collection, edit.row_id, edit.field, reason) from None


def edit_state(spec: FieldSpec, current: FieldState | None, edit: Edit, stamp: int, node: str) -> FieldState:
    """The field state after ``edit``, written at ``node`` at ``stamp``.

    Raises `InvalidEditError` for a value the field does not accept, an operation
    its merge type does not have, a status moving backwards, or a second write to
    an append-only field.
    """
    merge = spec.merge
    if merge == "add_wins_set":
        entries = decode_set(current.raw, spec.decoder.decode) if current is not None else {}
        if edit.op == "add":
            _checked(spec, edit, [(edit.value, [], [])])
            entries = set_add(entries, edit.value, (stamp, node))
        elif edit.op == "remove":
            entries = set_remove(entries, edit.value)
        elif edit.op == "set":
            wanted = edit.value if isinstance(edit.value, list | set | frozenset | tuple) else None
            if wanted is None:
                raise InvalidEditError(edit.collection, edit.row_id, edit.field, "expected a list of members")
            wanted = set(wanted)
            _checked(spec, edit, [(m, [], []) for m in sorted(wanted)])
            for member in set_members(entries) - wanted:
                entries = set_remove(entries, member)
            for member in wanted - set_members(entries):
                entries = set_add(entries, member, (stamp, node))
        else:
            raise InvalidEditError(edit.collection, edit.row_id, edit.field, f"a set takes add, remove or set, not {edit.op}")
        return FieldState(encode_set(entries), stamp, node)
    if merge == "counter":
        if edit.op != "increment":
            raise InvalidEditError(edit.collection, edit.row_id, edit.field, "a counter only takes increment")
        by = 1 if edit.value is None else edit.value
        if not isinstance(by, int) or isinstance(by, bool) or by < 1:
            raise InvalidEditError(edit.collection, edit.row_id, edit.field, "increment by a positive integer")
        counts = spec.decoder.decode(current.raw) if current is not None else {}
        return FieldState(_checked(spec, edit, counter_add(counts, node, by)), stamp, node)
    if edit.op != "set":
        raise InvalidEditError(edit.collection, edit.row_id, edit.field, f"{merge} fields only take set")
    raw = _checked(spec, edit, edit.value)
    if merge == "append_only" and current is not None:
        if current.raw != raw:
            raise InvalidEditError(edit.collection, edit.row_id, edit.field, "append-only: record a new entry instead")
        return current  # the same write again: the first one stands
    if merge in ("status_lattice", "tombstone") and current is not None:
        order = spec.lattice if spec.lattice is not None else (False, True)
        old = spec.decoder.decode(current.raw)
        new = spec.decoder.decode(raw)
        if order.index(new) < order.index(old):
            raise InvalidEditError(
                edit.collection, edit.row_id, edit.field, f"cannot move back from `{old}` to `{new}`"
            )
    return FieldState(raw, stamp, node)
