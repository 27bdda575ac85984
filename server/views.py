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
from sync.schema import COLLECTIONS, CollectionSpec, ConsentChannel, FieldSpec, TimeMs


def _visible(spec: CollectionSpec) -> list[FieldSpec]:
    """Fields that travel as JSON as they are stored (not PII, not blind indexes)."""
    return [f for f in spec.fields.values() if not f.secret]


#: the longest plaintext each PII field takes (characters)
PII_MAX_LENGTH: dict[str, int] = {
    "name": 64, "phone": 32, "second_contact": 64, "email": 254, "id_number": 32, "birthday": 10,
    "address": 256, "employer": 128, "position": 64, "interests": 512, "notes": 2_000,
}


def _pii_type(f: FieldSpec) -> Any:
    if f.name == "birthday":
        return Annotated[str, Meta(pattern=r"^\d{4}-\d{2}-\d{2}$", description="YYYY-MM-DD (PII)")]
    return Annotated[str, Meta(min_length=1, max_length=PII_MAX_LENGTH.get(f.name, 256), description=f"PII ({f.pii})")]


def _member_type(f: FieldSpec) -> Any:
    return typing.get_args(typing.get_args(f.annotation)[0])[0]


def _pii_view_type(f: FieldSpec) -> Any:
    """A PII field as a reader gets it: in full, or masked (server/masking.py), so
    without the write body's format constraints (``1985-**-**`` is no date)."""
    return Annotated[str, Meta(max_length=PII_MAX_LENGTH.get(f.name, 256),
                               description=f"PII ({f.pii}): in full, or masked for a role that sees it masked")]


def view_struct(collection: str, *, policy_shaped: bool = False) -> type[msgspec.Struct]:
    """The read view of a row: ``row_id`` and every non-PII field, materialised.

    ``policy_shaped``: every field but ``row_id`` (and ``unavailable``) may be
    absent, for the fields the caller's role does not see (`msgspec.UNSET`,
    omitted from the JSON, never null), and PII fields take masked values too.
    """
    spec = COLLECTIONS[collection]

    def optional(annotation: Any, default: Any) -> tuple[Any, Any]:
        # as in `write_struct`: UNSET as the default (never encoded) keeps the
        # annotation, and so the field's OpenAPI schema, as it is
        return (annotation, msgspec.UNSET) if policy_shaped else (annotation, default)

    fields: list[tuple[str, Any, Any]] = [("row_id", RowId, msgspec.NODEFAULT)]
    for f in _visible(spec):
        if f.merge == "add_wins_set":
            fields.append((f.name, *optional(list[_member_type(f)], msgspec.field(default_factory=list))))
        elif f.merge == "counter":
            fields.append((f.name, *optional(int, 0)))
        else:
            fields.append((f.name, *optional(f.annotation, f.default)))
    if collection == "customers":
        for f in spec.pii_fields:
            pii = _pii_view_type(f) if policy_shaped else _pii_type(f)
            fields.append((f.name, *optional(pii | None, None)))
        fields.append(("unavailable", Annotated[list[str], Meta(
            description="PII fields this node holds but cannot open (no key here, or damaged); the reason is logged"
        )], msgspec.NODEFAULT if policy_shaped else msgspec.field(default_factory=list)))  # always in the JSON
    name = "".join(p.capitalize() for p in spec.name.rstrip("s").split("_")) + "View"
    return msgspec.defstruct(name, fields, kw_only=True, omit_defaults=policy_shaped, module=__name__)


class IdNumberConsent(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The person's separate consent to the processing of their ID number (PIPL
    Art. 29), given with the write that stores it: recorded as a ``consents`` row
    (purpose ``id_number``, granted) in the same transaction. No free text."""

    #: how the person gave it
    channel: ConsentChannel
    #: when the person gave it (Unix ms); now when left out (UNSET: see `view_struct`)
    at_ms: TimeMs = msgspec.UNSET  # type: ignore[assignment]


def write_struct(collection: str) -> type[msgspec.Struct]:
    """A create or patch body: each settable field optional; ``{set}_add`` /
    ``{set}_remove`` for sets, ``{counter}_increment`` for counters, ``deleted: true``.
    A customer's also takes ``id_number_consent`` (server/consents.py): no field of
    the row, the consent that writing ``id_number`` needs."""
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
    if collection == "customers":
        for f in spec.pii_fields:  # plaintext in, sealed at this node before anything is stored
            fields.append((f.name, _pii_type(f) | None, msgspec.UNSET))
        fields.append(("id_number_consent", IdNumberConsent, msgspec.UNSET))
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


def pii_from(body: msgspec.Struct) -> dict[str, str | None]:
    """The PII fields a customer write body sets (plaintext; None clears)."""
    return {
        f.name: getattr(body, f.name)
        for f in COLLECTIONS["customers"].pii_fields
        if getattr(body, f.name) is not msgspec.UNSET
    }


def to_view(view: type[msgspec.Struct], row: dict[str, Any], opened: Any = None) -> msgspec.Struct:
    """A view of a stored row; ``opened`` (a `server.keyring.OpenedRow`) fills in
    PII. Sealed bytes never reach a view: PII shows only as opened here."""
    values = {name: row[name] for name in view.__struct_fields__ if name in row and name not in _SEALED}
    if opened is not None:
        values.update({k: (None if v is None else v.reveal()) for k, v in opened.values.items()})
        values["unavailable"] = sorted(opened.unavailable)
    return view(**values)


#: a customer write body's member -> the schema field it changes
WRITE_TARGETS: dict[str, str] = {}
for _f in _visible(COLLECTIONS["customers"]) + list(COLLECTIONS["customers"].pii_fields):
    if _f.merge == "add_wins_set":
        WRITE_TARGETS[f"{_f.name}_add"] = WRITE_TARGETS[f"{_f.name}_remove"] = _f.name
    elif _f.merge == "counter":
        WRITE_TARGETS[f"{_f.name}_increment"] = _f.name
    else:
        WRITE_TARGETS[_f.name] = _f.name


def fields_written(body: msgspec.Struct) -> list[str]:
    """The schema fields a customer write body changes, in schema order (a set
    given with an empty list counts: the body names it; ``id_number_consent`` is
    a consent record, no field of the customer)."""
    given = {WRITE_TARGETS[name] for name in body.__struct_fields__
             if name in WRITE_TARGETS and getattr(body, name) is not msgspec.UNSET}
    return [name for name in COLLECTIONS["customers"].fields if name in given]


def apply_write(row: dict[str, Any], body: msgspec.Struct) -> dict[str, Any]:
    """``row`` (materialised) as it would be after the write ``body``: what row
    admission reads of it (sets as sorted lists; PII as the plaintext given)."""
    out = dict(row)
    for f in _visible(COLLECTIONS["customers"]):
        if f.merge == "add_wins_set":
            members = set(out.get(f.name) or ())
            added, removed = getattr(body, f"{f.name}_add"), getattr(body, f"{f.name}_remove")
            members -= set() if removed is msgspec.UNSET else set(removed)
            members |= set() if added is msgspec.UNSET else set(added)
            out[f.name] = sorted(members)
        elif f.merge == "counter":
            by = getattr(body, f"{f.name}_increment")
            out[f.name] = out.get(f.name, 0) + (0 if by is msgspec.UNSET else by)
        elif (value := getattr(body, f.name)) is not msgspec.UNSET:
            out[f.name] = value
    return out


def blank_row(collection: str, row_id: str) -> dict[str, Any]:
    """A new row as materialised before any write: every field at its default."""
    row: dict[str, Any] = {"row_id": row_id}
    for f in COLLECTIONS[collection].fields.values():
        row[f.name] = [] if f.merge == "add_wins_set" else (None if f.default is msgspec.NODEFAULT else f.default)
    return row


_SEALED = frozenset(f.name for c in COLLECTIONS.values() for f in c.pii_fields)

#: a customer as the API shows it, shaped by the caller's access (see server/access.py)
CustomerView = view_struct("customers", policy_shaped=True)
CustomerWrite = write_struct("customers")
#: a user as the operator API shows it: never its password hash (a secret field)
UserView = view_struct("users")
#: a consent record as the API shows it, shaped by the caller's access (server/consents.py)
ConsentView = view_struct("consents", policy_shaped=True)
