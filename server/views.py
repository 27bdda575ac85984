"""API Structs derived from `sync.schema`: what a client reads and writes.

The replicated Structs are the source; these views materialise them for JSON:
sets become lists of members, counters their sum, and PII fields are left out
until the crypto layer opens them (ciphertext never travels as JSON).
"""

from __future__ import annotations

import typing
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from sync.edits import Edit
from sync.ids import RowId
from sync.schema import COLLECTIONS, CollectionSpec, FieldSpec


def _visible(spec: CollectionSpec) -> list[FieldSpec]:
    return [f for f in spec.fields.values() if f.pii is None]


def _member_type(f: FieldSpec) -> Any:
    return typing.get_args(typing.get_args(f.annotation)[0])[0]


def view_struct(collection: str) -> type[msgspec.Struct]:
    """The read view of a row: ``row_id`` and every non-PII field, materialised."""
    spec = COLLECTIONS[collection]
    fields: list[tuple[str, Any, Any]] = [("row_id", RowId, msgspec.NODEFAULT)]
    for f in _visible(spec):
        if f.merge == "add_wins_set":
            fields.append((f.name, list[_member_type(f)], msgspec.field(default_factory=list)))
        elif f.merge == "counter":
            fields.append((f.name, int, 0))
        else:
            fields.append((f.name, f.annotation, f.default))
    name = "".join(p.capitalize() for p in spec.name.rstrip("s").split("_")) + "View"
    return msgspec.defstruct(name, fields, kw_only=True, module=__name__)


def write_struct(collection: str) -> type[msgspec.Struct]:
    """A create or patch body: each settable field optional; ``{set}_add`` /
    ``{set}_remove`` for sets, ``{counter}_increment`` for counters, ``deleted: true``."""
    spec = COLLECTIONS[collection]
    fields: list[tuple[str, Any, Any]] = []
    for f in _visible(spec):
        if f.merge == "add_wins_set":
            members = list[_member_type(f)]
            fields.append((f"{f.name}_add", Annotated[members, Meta(max_length=64)], msgspec.UNSET))
            fields.append((f"{f.name}_remove", Annotated[members, Meta(max_length=64)], msgspec.UNSET))
        elif f.merge == "counter":
            fields.append((f"{f.name}_increment", Annotated[int, Meta(ge=1, le=1_000)], msgspec.UNSET))
        elif f.merge == "tombstone":
            fields.append((f.name, Literal[True], msgspec.UNSET))
        else:
            fields.append((f.name, f.annotation, msgspec.UNSET))
    name = "".join(p.capitalize() for p in spec.name.rstrip("s").split("_")) + "Write"
    return msgspec.defstruct(
        name, fields, kw_only=True, omit_defaults=True, forbid_unknown_fields=True, module=__name__
    )


def edits_from(collection: str, row_id: str, body: msgspec.Struct) -> list[Edit]:
    """The edits a write body asks for, in field order."""
    spec = COLLECTIONS[collection]
    edits: list[Edit] = []
    for f in _visible(spec):
        if f.merge == "add_wins_set":
            for op in ("add", "remove"):
                members = getattr(body, f"{f.name}_{op}")
                if members is not msgspec.UNSET:
                    edits.extend(Edit(collection, row_id, f.name, op, m) for m in members)  # type: ignore[arg-type]
        elif f.merge == "counter":
            by = getattr(body, f"{f.name}_increment")
            if by is not msgspec.UNSET:
                edits.append(Edit(collection, row_id, f.name, "increment", by))
        else:
            value = getattr(body, f.name)
            if value is not msgspec.UNSET:
                edits.append(Edit(collection, row_id, f.name, "set", value))
    return edits


def to_view(view: type[msgspec.Struct], row: dict[str, Any]) -> msgspec.Struct:
    return view(**{name: row[name] for name in view.__struct_fields__})


CustomerView = view_struct("customers")
CustomerWrite = write_struct("customers")

