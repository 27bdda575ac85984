"""The replicated collections, declared once.

Each collection is a msgspec Struct; each field's annotation carries its
constraints, its merge type (``extra={"merge": ...}``) and, for personal
information, its field class (``extra={"pii": ...}``). Everything else is derived
from these declarations through `msgspec.inspect`: the SQLite tables
(`sync.store.ddl`), the wire type and decoder of every field's value, and merge
dispatch (`sync.merge`).

Merge types (see ../shared/DESIGN.md):

=================  ==========================================================
``lww``             last writer wins: greatest (HLC, origin node) wins
``add_wins_set``    observed-remove set: a concurrent add beats a remove
``status_lattice``  moves only forward, in the order the ``Literal`` declares
``counter``         per-node counts; the value is their sum
``append_only``     written once at creation; the first write wins
``tombstone``       ``False`` until deleted; delete beats any concurrent edit
=================  ==========================================================

PII values are sealed ciphertext (``bytes``) in storage and on the wire; only the
edge opens them. Secret fields (PII, wrapped keys, blind indexes) are shredded by
a tombstone: a deleted row keeps no secret state, and a secret value arriving for
it later is dropped, so deletion (and erasure) is a join like any other merge.
Fields declared ``index=True`` get an SQL index for lookups. A field declared
``parent="customers"`` makes its row a child of that customer (`PARENTS`): it
is in a node's scope exactly when its parent is. A field may hold a
frozen Struct (`KeyRef`): one value to merge and send, each member a column of
its own (``index=("member", ...)`` indexes members).

Schema evolution follows msgspec's rules: new fields get defaults, no field
changes type, and ``SCHEMA_VERSION`` goes up whenever a field or collection is
added. A node that receives a higher schema version than its own waits.
"""

from __future__ import annotations

import typing
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from sync.ids import NodeIdStr, RowId

SCHEMA_VERSION = 8

MergeType = Literal["lww", "add_wins_set", "status_lattice", "counter", "append_only", "tombstone"]
MERGE_TYPES: tuple[str, ...] = typing.get_args(MergeType)

FieldClass = Literal["contact", "identity", "address", "profile"]
FIELD_CLASSES: tuple[str, ...] = typing.get_args(FieldClass)
#: what a scope key protects: a PII field class, or the blind-index key
KeyClass = Literal["contact", "identity", "address", "profile", "index"]
#: scope_key: a scope key HPKE-wrapped for one node (its mailbox);
#: data_key: a customer's data key wrapped under a scope key;
#: epoch: the live version of a (group, class) scope key; older ones are destroyed
KeyKind = Literal["scope_key", "data_key", "epoch"]

# ---------------------------------------------------------------- value types

Text64 = Annotated[str, Meta(max_length=64)]
Text256 = Annotated[str, Meta(max_length=256)]
UserRef = Annotated[str, Meta(min_length=1, max_length=64)]
TimeMs = Annotated[int, Meta(ge=0, le=(1 << 48) - 1, description="Unix time in milliseconds")]
Tag = Annotated[str, Meta(min_length=1, max_length=64)]
#: an IANA time-zone name (``Asia/Shanghai``); checked against tzdata where it is used
TimeZoneName = Annotated[str, Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)*$")]
#: the work rule that made a task (server/work/): ``care_cadence``, ``birthday_care``, ...
RuleName = Annotated[str, Meta(min_length=1, max_length=32, pattern=r"^[a-z][a-z0-9_]*$")]
#: AES-256-GCM sealed value (version byte, nonce, ciphertext, tag); see crypto/.
SealedBytes = Annotated[bytes, Meta(max_length=16_384)]

#: a customer's data key for one class wrapped under its home group's scope key,
#: labelled with what opens it (`crypto.wrap.pack_row_key`)
RowKeyBytes = Annotated[bytes, Meta(max_length=320)]

#: keyed blind index of a phone or ID number (truncated HMAC; see crypto.blind_index)
BlindIndex = Annotated[int, Meta(ge=0, lt=1 << 32)]
KeyVersion = Annotated[int, Meta(ge=1, lt=1 << 32)]
#: a sign-in name: unique per deployment, lowercase (sign-in lowercases what is typed)
Username = Annotated[str, Meta(min_length=2, max_length=64, pattern=r"^[a-z0-9][a-z0-9._-]{1,63}$")]
#: an Argon2 hash in its PHC string form (``$argon2id$v=19$m=...,t=...,p=...$salt$hash``)
PasswordHash = Annotated[str, Meta(max_length=512, pattern=r"^\$argon2(id|i|d)\$")]
#: a scope group: a site's node id, or ``*`` for keys every node may hold
Group = Annotated[str, Meta(min_length=1, max_length=63, pattern=r"^(\*|[a-z0-9][a-z0-9.-]{0,62})$")]

Suppression = Literal["do_not_call", "refused_marketing", "blacklist"]
CustomerStatus = Literal["active", "suspended", "closed"]
TaskKind = Literal[
    "care",
    "retention",
    "survey",
    "sales",
    "revisit_installation",
    "revisit_repair",
    "revisit_complaint",
    "notice",
    "data_verification",
    "complaint",
    "visit",
]
#: Declared order is the lattice order; ``cancelled`` is the top.
TaskStatus = Literal["open", "assigned", "in_progress", "done", "archived", "cancelled"]
#: a task still to be worked (the rest are closed)
OPEN_TASK_STATUSES: tuple[TaskStatus, ...] = ("open", "assigned", "in_progress")
CallOutcome = Literal[
    "connected",
    "no_answer",
    "powered_off",
    "out_of_area",
    "suspended",
    "vacant_number",
    "refused",
    "busy",
    "callback_requested",
    "success",
]
CampaignStatus = Literal["draft", "active", "closed"]
#: what a consent is for (PIPL Art. 14-15): marketing contact, processing the ID
#: number (sensitive, Art. 28-29: its own, separate consent), processing at all
ConsentPurpose = Literal["marketing", "id_number", "data_processing"]
#: how the person gave or withdrew a consent
ConsentChannel = Literal["phone", "sms", "web", "app", "in_person", "paper"]
Role = Literal[
    "hq_admin",
    "supervisor",
    "agent",
    "account_manager",
    "partner_agent",
    "partner_supervisor",
    "auditor",
]


def _m(merge: MergeType, pii: FieldClass | None = None, *, secret: bool = False,
       index: bool | tuple[str, ...] = False, parent: str | None = None, **meta: Any) -> Meta:
    extra: dict[str, Any] = {"merge": merge}
    if pii is not None:
        extra["pii"] = pii
    if secret:
        extra["secret"] = True
    if index:
        extra["index"] = index
    if parent is not None:
        extra["parent"] = parent
    return Meta(extra=extra, **meta)


Deleted = Annotated[bool, _m("tombstone", description="row deleted; wins over any concurrent edit")]


def _pii(cls: FieldClass) -> Any:
    return Annotated[SealedBytes | None, _m("lww", cls, description=f"sealed PII ({cls} class)")]


#: the customer fields carrying a data key wrapped for the home group -> its class
ROW_KEY_FIELDS: dict[str, FieldClass] = {f"{cls}_key": cls for cls in FIELD_CLASSES}  # type: ignore[misc]


def _row_key(cls: FieldClass) -> Any:
    return Annotated[
        RowKeyBytes | None, _m("lww", secret=True, description=f"{cls} data key, wrapped for the home group")
    ]


# ---------------------------------------------------------------- collections


class Customer(msgspec.Struct, kw_only=True):
    """A customer of the operation; PII fields hold sealed ciphertext."""

    home_branch: Annotated[NodeIdStr | None, _m("lww")] = None
    star_level: Annotated[int, _m("lww", ge=0, le=7)] = 0
    segment: Annotated[Text64 | None, _m("lww")] = None
    arpu_fen: Annotated[int, _m("lww", ge=0, description="monthly ARPU in fen")] = 0
    status: Annotated[CustomerStatus, _m("lww")] = "active"
    assigned_agent: Annotated[UserRef | None, _m("lww")] = None
    account_manager: Annotated[UserRef | None, _m("lww")] = None
    sales_rep: Annotated[UserRef | None, _m("lww")] = None
    tags: Annotated[frozenset[Tag], _m("add_wins_set")] = frozenset()
    suppression: Annotated[frozenset[Suppression], _m("add_wins_set")] = frozenset()
    #: partner sites contracted to work this customer: scope groups besides the home branch
    partners: Annotated[frozenset[NodeIdStr], _m("add_wins_set")] = frozenset()
    name: _pii("contact") = None
    phone: _pii("contact") = None
    second_contact: _pii("contact") = None
    email: _pii("contact") = None
    id_number: _pii("identity") = None
    birthday: _pii("identity") = None
    address: _pii("address") = None
    employer: _pii("profile") = None
    position: _pii("profile") = None
    interests: _pii("profile") = None
    notes: _pii("profile") = None
    phone_index: Annotated[BlindIndex | None, _m("lww", secret=True, index=True)] = None
    id_number_index: Annotated[BlindIndex | None, _m("lww", secret=True, index=True)] = None
    #: the data key of each class, wrapped for the home group (home branch, or HQ),
    #: so a customer entering a node's scope arrives with its key; other groups'
    #: wraps (partners) are ``keys`` records
    contact_key: _row_key("contact") = None
    identity_key: _row_key("identity") = None
    address_key: _row_key("address") = None
    profile_key: _row_key("profile") = None
    #: the customer's local time zone (calling windows, days, birthdays); None:
    #: the node's ``[work] tz``
    tz: Annotated[TimeZoneName | None, _m("lww")] = None
    #: the star level the work rules last acted on: a ``star_level`` above it is a
    #: promotion (server/work/cadence.py), and when the rules saw it
    star_seen: Annotated[Annotated[int, Meta(ge=0, le=7)] | None, _m("lww")] = None
    promoted_at_ms: Annotated[TimeMs | None, _m("lww")] = None
    deleted: Deleted = False


class Task(msgspec.Struct, kw_only=True):
    """One piece of work on one customer."""

    customer_id: Annotated[RowId | None, _m("lww", index=True)] = None
    kind: Annotated[TaskKind, _m("lww")] = "care"
    campaign_id: Annotated[RowId | None, _m("lww")] = None
    assignee: Annotated[UserRef | None, _m("lww", index=True)] = None
    site: Annotated[NodeIdStr | None, _m("lww")] = None
    status: Annotated[TaskStatus, _m("status_lattice")] = "open"
    due_at_ms: Annotated[TimeMs | None, _m("lww")] = None
    deadline_at_ms: Annotated[TimeMs | None, _m("lww")] = None
    priority: Annotated[int, _m("lww", ge=0, le=9)] = 5
    attempts: Annotated[int, _m("counter", ge=0)] = 0
    category: Annotated[Text64 | None, _m("lww")] = None
    first_responder: Annotated[UserRef | None, _m("lww")] = None
    #: the work rule that made the task (None: made by a person)
    rule: Annotated[RuleName | None, _m("lww")] = None
    #: when the task was opened (complaints: the 30-day repeat window counts from it)
    created_at_ms: Annotated[TimeMs | None, _m("lww")] = None
    #: the work order a revisit follows up (installation or repair), and when it was returned
    order_ref: Annotated[Text64 | None, _m("lww")] = None
    returned_at_ms: Annotated[TimeMs | None, _m("lww")] = None
    #: a repeat complaint: the earlier complaint ticket of the same customer and
    #: category within 30 days
    repeat_of: Annotated[RowId | None, _m("lww")] = None
    #: the user the task was last taken from (reassigned, or a ticket handed over),
    #: so their inbox's delta can say it left
    handed_from: Annotated[UserRef | None, _m("lww", index=True)] = None
    deleted: Deleted = False


class Result(msgspec.Struct, kw_only=True):
    """What happened on a call or visit. Append-only: corrections are new results;
    only erasure or retention deletes one."""

    task_id: Annotated[RowId | None, _m("append_only")] = None
    customer_id: Annotated[RowId | None, _m("append_only", index=True)] = None
    outcome: Annotated[CallOutcome | None, _m("append_only")] = None
    duration_s: Annotated[int, _m("append_only", ge=0, le=86_400)] = 0
    callback_at_ms: Annotated[TimeMs | None, _m("append_only")] = None
    order_id: Annotated[Text64 | None, _m("append_only")] = None
    satisfaction: Annotated[Annotated[int, Meta(ge=1, le=5)] | None, _m("append_only")] = None
    refusal_reason: Annotated[Text64 | None, _m("append_only")] = None
    notes: Annotated[SealedBytes | None, _m("append_only", "profile")] = None
    agent: Annotated[UserRef | None, _m("append_only", index=True)] = None
    site: Annotated[NodeIdStr | None, _m("append_only")] = None
    recorded_at_ms: Annotated[TimeMs | None, _m("append_only")] = None
    #: erasure or retention purge; shreds the sealed notes
    deleted: Deleted = False


class Consent(msgspec.Struct, kw_only=True):
    """One consent event of one customer: a consent given or withdrawn, for one
    purpose, through one channel, at one time (PIPL Art. 14-15; Art. 29 for the
    separate consent an ID number needs). The history is kept: a record is never
    edited, a change of mind is a new record, and the current state of a
    (customer, purpose) is its latest record by (``at_ms``, row id).

    Ids, codes and times only, never free text, so no personal information. A
    consent row belongs to its customer (``parent``): it is in a node's scope
    exactly when its customer is, and travels and is purged with it."""

    customer_id: Annotated[RowId | None, _m("append_only", index=True, parent="customers")] = None
    purpose: Annotated[ConsentPurpose | None, _m("append_only")] = None
    #: given (true) or withdrawn (false); a record that does not say is no consent
    granted: Annotated[bool, _m("append_only")] = False
    channel: Annotated[ConsentChannel | None, _m("append_only")] = None
    #: when the person gave or withdrew it (not when it was recorded)
    at_ms: Annotated[TimeMs | None, _m("append_only")] = None
    #: the user who recorded it, or ``operator``
    recorded_by: Annotated[UserRef | None, _m("append_only")] = None
    #: the node where it was recorded
    site: Annotated[NodeIdStr | None, _m("append_only")] = None
    #: erasure; a consent is otherwise never deleted
    deleted: Deleted = False


class Campaign(msgspec.Struct, kw_only=True):
    """An HQ-defined campaign: calling window, attempts, retry spacing, partners."""

    name: Annotated[Text256 | None, _m("lww")] = None
    status: Annotated[CampaignStatus, _m("lww")] = "draft"
    window_start_min: Annotated[int, _m("lww", ge=0, le=1440)] = 8 * 60
    window_end_min: Annotated[int, _m("lww", ge=0, le=1440)] = 21 * 60
    max_attempts: Annotated[int, _m("lww", ge=1, le=20)] = 3
    retry_spacing_min: Annotated[int, _m("lww", ge=0, le=10_080)] = 60
    partners: Annotated[frozenset[NodeIdStr], _m("add_wins_set")] = frozenset()
    deleted: Deleted = False


class User(msgspec.Struct, kw_only=True):
    """A user, defined at HQ and replicated to the nodes of its site (``site``), so
    staff sign in there while HQ is away (see server/sessions.py)."""

    username: Annotated[Username | None, _m("lww", index=True)] = None
    display_name: Annotated[Text256 | None, _m("lww")] = None
    role: Annotated[Role | None, _m("lww")] = None
    site: Annotated[NodeIdStr | None, _m("lww")] = None
    team: Annotated[Text64 | None, _m("lww")] = None
    disabled: Annotated[bool, _m("lww")] = False
    #: Argon2id; secret, so a tombstone shreds it and no API view shows it
    password_hash: Annotated[PasswordHash | None, _m("lww", secret=True)] = None
    #: revocation stamp (ms, set at HQ; only grows): sessions and tokens issued
    #: before the user's last revocation are refused wherever the row has arrived
    tokens_valid_after_ms: Annotated[TimeMs, _m("lww")] = 0
    deleted: Deleted = False


class KeyRef(msgspec.Struct, frozen=True, array_like=True, forbid_unknown_fields=True):
    """What a key record is: written once, one field on the wire and in the merge
    state, one column per member in the table."""

    kind: KeyKind
    scope_group: Group
    field_class: KeyClass
    #: scope_key: the node it is wrapped for, and which of that node's key versions
    recipient: NodeIdStr | None = None
    recipient_key_version: KeyVersion | None = None
    #: data_key: the customer it belongs to
    customer_id: RowId | None = None
    #: scope_key, data_key: the version of the wrapped key itself
    key_version: KeyVersion | None = None


class KeyWrap(msgspec.Struct, frozen=True, array_like=True, forbid_unknown_fields=True):
    """How a key record's key is held now; replaced whole, so a re-wrap can never
    pair a wrapped key with the wrong scope version."""

    #: data_key: the scope key version it is wrapped under; epoch: the live version
    scope_version: KeyVersion | None = None
    #: scope_key: HPKE-sealed for the recipient; data_key: AES-GCM under the scope key
    wrapped: SealedBytes | None = None


class KeyRecord(msgspec.Struct, kw_only=True):
    """A wrapped key (see crypto/ and server/keyring.py). Row ids are name-based
    UUIDs of what the record is, so the same key from two places is one row.

    Three fields, not one per attribute: every customer has a record per field
    class and scope group, so each field here is a change per record in sync."""

    ref: Annotated[KeyRef | None, _m("append_only", index=("scope_group", "customer_id"))] = None
    wrap: Annotated[KeyWrap | None, _m("lww", secret=True)] = None
    deleted: Deleted = False


#: one purged row, as a receipt lists it: ``collection/row_id``
PurgedRow = Annotated[str, Meta(min_length=3, max_length=100, pattern=r"^[a-z_]+/[0-9A-Za-z-]+$")]


class PurgeReceipt(msgspec.Struct, kw_only=True):
    """A node's signed statement that it purged rows that left its scope, with
    their keys; kept at HQ as evidence (PIPL Art. 21). Travels up only. The
    signature (Ed25519, the node's identity key ``key_version``) covers
    `server.purge_receipts.signed_bytes` of the other fields."""

    node: Annotated[NodeIdStr | None, _m("append_only")] = None
    purged_at_ms: Annotated[TimeMs | None, _m("append_only")] = None
    rows: Annotated[list[PurgedRow], _m("append_only", max_length=50_000)] = []
    keys_purged: Annotated[int, _m("append_only", ge=0)] = 0
    key_version: Annotated[KeyVersion | None, _m("append_only")] = None
    signature: Annotated[Annotated[bytes, Meta(max_length=128)] | None, _m("append_only")] = None
    deleted: Deleted = False


# ---------------------------------------------------------------- derivation

#: A dot: the (HLC stamp, origin node) of one add to a set.
Dot = tuple[int, str]


class FieldSpec:
    """One field of one collection, as derived from its annotation."""

    __slots__ = (
        "collection", "name", "merge", "pii", "annotation", "wire_type",
        "default", "sql_type", "nullable", "lattice", "decoder", "secret", "index", "members",
    )

    def __init__(
        self,
        collection: str,
        name: str,
        merge: MergeType,
        pii: FieldClass | None,
        annotation: Any,
        wire_type: Any,
        default: Any,
        sql_type: str,
        nullable: bool,
        lattice: tuple[str, ...] | None,
        secret: bool = False,
        index: bool = False,
        members: tuple[str, ...] = (),
    ) -> None:
        self.collection = collection
        self.name = name
        self.merge = merge
        self.pii = pii
        self.annotation = annotation
        self.wire_type = wire_type
        self.default = default
        self.sql_type = sql_type
        self.nullable = nullable
        self.lattice = lattice
        #: shredded by the row's tombstone (PII, wrapped keys, blind indexes)
        self.secret = secret or pii is not None
        #: the column gets an SQL index
        self.index = index
        #: a Struct-valued field: the members stored as columns of their own
        self.members = members
        #: decodes this field's msgpack wire value, enforcing its constraints
        self.decoder = msgspec.msgpack.Decoder(wire_type)

    def __repr__(self) -> str:
        return f"FieldSpec({self.collection}.{self.name}, merge={self.merge}, pii={self.pii})"


class Column:
    """One SQL column of a collection's table: a field's plain value, or one member
    of a Struct-valued field."""

    __slots__ = ("name", "field", "member", "sql_type", "nullable", "index")

    def __init__(self, name: str, field: FieldSpec, member: str | None, sql_type: str, nullable: bool,
                 index: bool) -> None:
        self.name = name
        self.field = field
        self.member = member
        self.sql_type = sql_type
        self.nullable = nullable
        self.index = index

    def __repr__(self) -> str:
        return f"Column({self.field.collection}.{self.name})"


class CollectionSpec:
    """A replicated collection and its fields, in declaration order."""

    __slots__ = ("name", "struct", "fields", "columns")

    def __init__(
        self, name: str, struct: type[msgspec.Struct], fields: dict[str, FieldSpec], columns: dict[str, Column]
    ) -> None:
        self.name = name
        self.struct = struct
        self.fields = fields
        #: the table's value columns by name, in declaration order
        self.columns = columns

    @property
    def pii_fields(self) -> tuple[FieldSpec, ...]:
        return tuple(f for f in self.fields.values() if f.pii is not None)

    @property
    def secret_fields(self) -> tuple[FieldSpec, ...]:
        return tuple(f for f in self.fields.values() if f.secret)

    def __repr__(self) -> str:
        return f"CollectionSpec({self.name}, {len(self.fields)} fields)"


class SchemaDeclarationError(TypeError):
    """A collection declares a field without a valid merge type or PII class."""


def _sql_type(info: msgspec.inspect.Type) -> tuple[str, bool]:
    """SQLite column type and nullability of a materialized value."""
    nullable = False
    if isinstance(info, msgspec.inspect.UnionType):
        members = [t for t in info.types if not isinstance(t, msgspec.inspect.NoneType)]
        nullable = len(members) < len(info.types)
        if len(members) != 1:
            return "BLOB", nullable
        info = members[0]
    if isinstance(info, msgspec.inspect.Metadata):
        info = info.type
    match info:
        case msgspec.inspect.BoolType() | msgspec.inspect.IntType():
            return "INTEGER", nullable
        case msgspec.inspect.FloatType():
            return "REAL", nullable
        case msgspec.inspect.BytesType():
            return "BLOB", nullable
        case msgspec.inspect.StrType() | msgspec.inspect.LiteralType():
            return "TEXT", nullable
        case msgspec.inspect.FrozenSetType() | msgspec.inspect.SetType() | msgspec.inspect.ListType():
            return "TEXT", nullable  # JSON array of the live elements
    raise SchemaDeclarationError(f"no SQL type for {info!r}")


def _derive(name: str, struct: type[msgspec.Struct]) -> CollectionSpec:
    hints = typing.get_type_hints(struct, include_extras=True)
    info = msgspec.inspect.type_info(struct)
    assert isinstance(info, msgspec.inspect.StructType)
    fields: dict[str, FieldSpec] = {}
    #: column name -> (field, member or None, SQL type, indexed)
    columns: dict[str, tuple[str, str | None, str, bool]] = {}
    for f in info.fields:
        meta = f.type
        if not isinstance(meta, msgspec.inspect.Metadata) or not meta.extra or "merge" not in meta.extra:
            raise SchemaDeclarationError(f"{name}.{f.name} declares no merge type")
        merge = meta.extra["merge"]
        if merge not in MERGE_TYPES:
            raise SchemaDeclarationError(f"{name}.{f.name}: unknown merge type {merge!r}")
        pii = meta.extra.get("pii")
        if pii is not None and pii not in FIELD_CLASSES:
            raise SchemaDeclarationError(f"{name}.{f.name}: unknown field class {pii!r}")
        annotation = hints[f.name]
        inner = meta.type
        lattice = None
        if merge == "add_wins_set":
            if not isinstance(inner, msgspec.inspect.FrozenSetType):
                raise SchemaDeclarationError(f"{name}.{f.name}: an add-wins set must be a frozenset")
            elem = typing.get_args(typing.get_args(annotation)[0])[0]
            wire_type = list[tuple[elem, list[tuple[int, NodeIdStr]], list[tuple[int, NodeIdStr]]]]
        elif merge == "counter":
            if not isinstance(inner, msgspec.inspect.IntType):
                raise SchemaDeclarationError(f"{name}.{f.name}: a counter must be an int")
            wire_type = dict[NodeIdStr, Annotated[int, Meta(ge=0)]]
        elif merge == "status_lattice":
            if not isinstance(inner, msgspec.inspect.LiteralType):
                raise SchemaDeclarationError(f"{name}.{f.name}: a status lattice must be a Literal")
            # inspect sorts Literal values; the declared order is the lattice order
            lattice = typing.get_args(typing.get_args(annotation)[0])
            wire_type = annotation
        elif merge == "tombstone":
            if not isinstance(inner, msgspec.inspect.BoolType):
                raise SchemaDeclarationError(f"{name}.{f.name}: a tombstone must be a bool")
            wire_type = annotation
        else:
            wire_type = annotation
        struct_type = _struct_type(inner)
        index = meta.extra.get("index", False)
        if struct_type is not None:
            if merge not in ("lww", "append_only"):
                raise SchemaDeclarationError(f"{name}.{f.name}: a Struct value merges as lww or append_only")
            sql_type, nullable = "BLOB", True  # no column of its own
            members = tuple(m.name for m in struct_type.fields)
            if not set(index or ()) <= set(members):
                raise SchemaDeclarationError(f"{name}.{f.name}: index names no member of {struct_type.cls.__name__}")
            for m in struct_type.fields:
                if m.name in columns:
                    raise SchemaDeclarationError(f"{name}.{f.name}.{m.name}: a column of that name exists")
                columns[m.name] = (f.name, m.name, _sql_type(m.type)[0], m.name in (index or ()))
        else:
            members = ()
            sql_type, nullable = _sql_type(inner)
            if not isinstance(index, bool):
                raise SchemaDeclarationError(f"{name}.{f.name}: index=True or False (names are for Struct members)")
            columns[f.name] = (f.name, None, sql_type, index)
        fields[f.name] = FieldSpec(
            collection=name,
            name=f.name,
            merge=merge,
            pii=pii,
            annotation=annotation,
            wire_type=wire_type,
            default=f.default,
            sql_type=sql_type,
            nullable=nullable,
            lattice=lattice,
            secret=bool(meta.extra.get("secret")),
            index=index is True,
            members=members,
        )
    if any(f.secret for f in fields.values()) and "deleted" not in fields:
        raise SchemaDeclarationError(f"{name}: secret fields need a tombstone to shred them")
    return CollectionSpec(
        name,
        struct,
        fields,
        {
            col: Column(col, fields[field], member, sql_type, member is not None or fields[field].nullable, index)
            for col, (field, member, sql_type, index) in columns.items()
        },
    )


def _struct_type(info: msgspec.inspect.Type) -> msgspec.inspect.StructType | None:
    """The Struct of a ``Struct | None`` field (None for any other type)."""
    if isinstance(info, msgspec.inspect.UnionType):
        members = [t for t in info.types if not isinstance(t, msgspec.inspect.NoneType)]
        info = members[0] if len(members) == 1 else info
    return info if isinstance(info, msgspec.inspect.StructType) else None


def derive_collections(structs: dict[str, type[msgspec.Struct]]) -> dict[str, CollectionSpec]:
    """Derive collection specs from Struct declarations (raises `SchemaDeclarationError`)."""
    return {name: _derive(name, struct) for name, struct in structs.items()}


COLLECTIONS: dict[str, CollectionSpec] = derive_collections(
    {
        "customers": Customer,
        "tasks": Task,
        "results": Result,
        "campaigns": Campaign,
        "users": User,
        "keys": KeyRecord,
        "purge_receipts": PurgeReceipt,
        "consents": Consent,
    }
)


def _parents(collections: dict[str, CollectionSpec]) -> dict[str, tuple[str, str]]:
    """child collection -> (its parent collection, the field naming the parent row),
    from fields declared ``parent=``: one per collection, written once (a row
    never changes parent), naming a collection that exists."""
    out: dict[str, tuple[str, str]] = {}
    for spec in collections.values():
        for f in spec.fields.values():
            meta = typing.get_args(f.annotation)[1:]
            parent = next((m.extra.get("parent") for m in meta if isinstance(m, Meta) and m.extra), None)
            if parent is None:
                continue
            if parent not in collections or parent == spec.name:
                raise SchemaDeclarationError(f"{spec.name}.{f.name}: no collection `{parent}` to belong to")
            if f.merge != "append_only" or spec.name in out:
                raise SchemaDeclarationError(f"{spec.name}.{f.name}: a row names its one parent in an append-only field")
            out[spec.name] = (parent, f.name)
    return out


#: rows that belong to a row of another collection: a child is in a peer's scope
#: exactly when its parent is (`sync.scope.PeerScope.admits_child`)
PARENTS: dict[str, tuple[str, str]] = _parents(COLLECTIONS)


def field_spec(collection: str, field: str) -> FieldSpec | None:
    """The spec of ``collection.field``, or None if the schema has no such field."""
    spec = COLLECTIONS.get(collection)
    return None if spec is None else spec.fields.get(field)
