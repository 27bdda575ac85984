"""The keys a node holds, and the key records it writes to share them.

The hierarchy (DESIGN.md, Crypto)::

    node key (X25519, in the keystore)
      -> scope keys, one per (scope group, field class, version): HQ makes them and
         sends each node of a group a ``scope_key`` record HPKE-wrapped for it; the
         node moves the key into its keystore and shreds the record
      -> data keys, one per (customer, field class, version), wrapped under the
         scope key of each of the customer's groups (AES-GCM): for its home group
         in the customer row itself (``contact_key``, ...), so a customer arrives
         with its key in one row; for other groups (partners) as ``data_key`` records
      -> field ciphertext (AES-256-GCM, `crypto.seal`)

Live keys live only in the keystore; the database holds ciphertext and wraps.
So once a scope key is dropped from the keystore (erasure rotates it), a copy of
the database taken earlier opens nothing it wrapped, even with today's keystore.

A scope group is a site's node id (its home-branch customers, or the customers
contracted to a partner); ``*`` holds the blind-index key. Key record row ids are
name-based UUIDs of what they hold, so one key written twice is one row.

No web framework here: the routes, the CLI and the key steward call this.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import Any, NamedTuple

from crypto.blind_index import blind_index, normalize_id_number, normalize_phone
from crypto.errors import NormalizeError, OpenError, UnwrapError
from crypto.keys import DataKey, ScopeKey, new_key
from crypto.keystore import Keystore
from crypto.plaintext import Plaintext
from crypto.seal import FieldContext, open_field, seal_field, sealed_key_version
from crypto.wrap import (
    DataKeyWrapContext,
    RowKey,
    ScopeWrapContext,
    pack_row_key,
    unpack_row_key,
    unwrap_data_key,
    unwrap_scope_key,
    wrap_data_key,
    wrap_scope_key,
)
from sync.edits import Edit
from sync.schema import COLLECTIONS, FIELD_CLASSES, ROW_KEY_FIELDS, KeyRef, KeyWrap
from sync.store import ReplicaStore
from sync.store.errors import StoreBusyError
from sync.store.snapshot import Snapshot

log = logging.getLogger(__name__)

INDEX_GROUP = "*"
INDEX_CLASS = "index"
#: the PII field classes plus the blind-index key
KEY_CLASSES: tuple[str, ...] = (*FIELD_CLASSES, INDEX_CLASS)

#: customer PII field -> its field class
CUSTOMER_PII: dict[str, str] = {f.name: f.pii for f in COLLECTIONS["customers"].pii_fields}  # type: ignore[misc]
#: PII field -> (its blind-index field, its normaliser)
INDEXED: dict[str, tuple[str, Callable[[str], str]]] = {
    "phone": ("phone_index", normalize_phone),
    "id_number": ("id_number_index", normalize_id_number),
}

_NAMESPACE = uuid.UUID("0b9c8a52-3f0e-4f4e-9d55-6f7574706f73")


def key_row_id(*parts: object) -> str:
    """A stable row id for a key record: a name-based UUID of what it holds."""
    return str(uuid.uuid5(_NAMESPACE, "/".join(str(p) for p in parts)))


def scope_key_row_id(recipient: str, recipient_key_version: int, group: str, field_class: str, version: int) -> str:
    return key_row_id("scope_key", recipient, recipient_key_version, group, field_class, version)


def data_key_row_id(customer_id: str, field_class: str, key_version: int, group: str) -> str:
    return key_row_id("data_key", customer_id, field_class, key_version, group)


def epoch_row_id(group: str, field_class: str) -> str:
    return key_row_id("epoch", group, field_class)


def home_group(row: Mapping[str, Any], hq: str) -> str:
    """A customer's home scope group: its home branch, or HQ when it has none."""
    return row.get("home_branch") or hq


def customer_groups(row: Mapping[str, Any], hq: str) -> set[str]:
    """The scope groups of a customer: its home group and its partners."""
    return {home_group(row, hq), *(row.get("partners") or ())}


_ROW_KEY_FIELD = {cls: name for name, cls in ROW_KEY_FIELDS.items()}


def row_key_field(field_class: str) -> str:
    """The customer field carrying the class's data key wrapped for the home group."""
    return _ROW_KEY_FIELD[field_class]


class WrappedDataKey(NamedTuple):
    """One wrap of a customer's data key, wherever it is kept: ``record`` is the
    ``keys`` record's row id, or None for the wrap carried in the customer row."""

    customer_id: str
    field_class: str
    group: str
    scope_version: int | None
    key_version: int
    wrapped: bytes | None
    record: str | None = None


def record_wrap(record: Mapping[str, Any]) -> WrappedDataKey:
    """The wrap a ``data_key`` record holds."""
    return WrappedDataKey(
        record["customer_id"], record["field_class"], record["scope_group"], record["scope_version"],
        record["key_version"], record["wrapped"], record["row_id"],
    )


def row_key_wraps(customer_id: str, row: Mapping[str, Any]) -> list[WrappedDataKey]:
    """The wraps carried in a customer row (a malformed one is logged and skipped:
    the fields it would open show as unavailable)."""
    out = []
    for cls in FIELD_CLASSES:
        blob = row.get(row_key_field(cls))
        if blob is None:
            continue
        try:
            key = unpack_row_key(blob, f"{cls} data key in customer {customer_id}")
        except UnwrapError as exc:
            log.warning("keys.row_key unreadable", extra={"row_id": customer_id, "reason": exc.reason})
            continue
        out.append(WrappedDataKey(customer_id, cls, key.group, key.scope_version, key.key_version, key.wrapped))
    return out


class NoScopeKeyError(Exception):
    """This node holds no scope key for any of the customer's groups in that class,
    so it cannot make (or find) the customer's data key."""

    code = "no_scope_key"

    def __init__(self, customer_id: str, field_class: str, groups: Iterable[str]) -> None:
        self.customer_id = customer_id
        self.field_class = field_class
        self.groups = sorted(groups)
        super().__init__(
            f"this node holds no `{field_class}` key for the scope groups {self.groups} of customer "
            f"{customer_id}: write these fields at a node of one of those groups, or at HQ"
        )
        self.message = str(self)

    def details(self) -> dict[str, object]:
        return {"row_id": self.customer_id, "field_class": self.field_class, "groups": self.groups}


class NotNormalisableError(ValueError):
    """A phone or ID number that its normaliser refuses (the message holds no value)."""

    code = "invalid_value"

    def __init__(self, field: str, detail: str) -> None:
        self.field = field
        self.detail = detail
        super().__init__(f"`{field}` is not a valid {field.replace('_', ' ')}: {detail}")
        self.message = str(self)

    def details(self) -> dict[str, object]:
        return {"field": self.field, "path": f"$.{self.field}"}


class OpenedRow:
    """A customer's PII as this node can open it: ``values`` (field -> Plaintext or
    None when empty) and ``unavailable`` (field -> reason code, for the log)."""

    __slots__ = ("values", "unavailable")

    def __init__(self) -> None:
        self.values: dict[str, Plaintext | None] = {}
        self.unavailable: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"OpenedRow(fields={sorted(self.values)}, unavailable={self.unavailable})"


def data_key_records_in(snap: Snapshot, customer_id: str) -> list[dict[str, Any]]:
    """The customer's ``data_key`` records that hold a wrap."""
    rows = snap.find_rows("keys", customer_id=customer_id, kind="data_key", deleted=False)
    return [r for r in rows if r["wrapped"] is not None]


class Keyring:
    """One node's keys: its keystore, the key records in its store, a cache of
    unwrapped data keys."""

    def __init__(
        self,
        store: ReplicaStore,
        keystore: Keystore,
        *,
        hq: str,
        cache_size: int = 50_000,
        random: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.store = store
        self.keystore = keystore
        self.hq = hq
        self.random = random
        self._cache: OrderedDict[tuple[str, int], DataKey] = OrderedDict()
        self._cache_size = cache_size

    @property
    def node_id(self) -> str:
        return self.store.node_id

    # ------------------------------------------------------------ scope keys

    def scope_key(self, group: str, field_class: str, version: int) -> ScopeKey | None:
        return self.keystore.scope_key(group, field_class, version)

    def latest_scope_key(self, group: str, field_class: str) -> ScopeKey | None:
        return self.keystore.latest_scope_key(group, field_class)

    def index_key(self) -> ScopeKey | None:
        return self.keystore.latest_scope_key(INDEX_GROUP, INDEX_CLASS)

    @staticmethod
    def scope_key_edits(recipient: str, recipient_key_version: int, kem_pub: bytes, key: ScopeKey) -> list[Edit]:
        """A ``scope_key`` record: ``key`` HPKE-wrapped for one node's key-receiving key."""
        ctx = ScopeWrapContext(
            recipient=recipient,
            recipient_key_version=recipient_key_version,
            group=key.group,
            field_class=key.field_class,
            version=key.version,
        )
        row = scope_key_row_id(recipient, recipient_key_version, key.group, key.field_class, key.version)
        return record_edits(
            row,
            KeyRef(
                kind="scope_key",
                scope_group=key.group,
                field_class=key.field_class,  # type: ignore[arg-type]
                recipient=recipient,
                recipient_key_version=recipient_key_version,
                key_version=key.version,
            ),
            KeyWrap(wrapped=wrap_scope_key(kem_pub, key.raw, ctx)),
        )

    def unwrap_scope_record(self, record: Mapping[str, Any]) -> ScopeKey:
        """Open a ``scope_key`` record addressed to this node (raises `UnwrapError`)."""
        what = f"scope key {record['scope_group']}/{record['field_class']} v{record['key_version']} for {record['recipient']}"
        if record["recipient"] != self.node_id:
            raise UnwrapError(what, "wrong_recipient")
        identity = self.keystore.identity_for(record["recipient_key_version"])
        if identity is None or record["wrapped"] is None:
            raise UnwrapError(what, "no_key")
        ctx = ScopeWrapContext(
            recipient=record["recipient"],
            recipient_key_version=record["recipient_key_version"],
            group=record["scope_group"],
            field_class=record["field_class"],
            version=record["key_version"],
        )
        raw = unwrap_scope_key(identity.kem_key, record["wrapped"], ctx)
        return ScopeKey(raw, record["key_version"], record["scope_group"], record["field_class"])

    # ------------------------------------------------------------ data keys

    def wrap_data_key_edits(
        self, customer_id: str, field_class: str, key: DataKey, scope_key: ScopeKey, *, in_row: bool = False
    ) -> list[Edit]:
        """``key`` wrapped under ``scope_key`` (AES-GCM): in the customer's row
        (``in_row``, for its home group) or as a ``data_key`` record."""
        ctx = DataKeyWrapContext(
            customer_id=customer_id,
            field_class=field_class,
            group=scope_key.group,
            scope_version=scope_key.version,
            key_version=key.version,
        )
        wrapped = wrap_data_key(scope_key, key.raw, ctx)
        if in_row:
            blob = pack_row_key(RowKey(scope_key.group, scope_key.version, key.version, wrapped))
            return [Edit("customers", customer_id, row_key_field(field_class), "set", blob)]
        row = data_key_row_id(customer_id, field_class, key.version, scope_key.group)
        return record_edits(
            row,
            KeyRef(
                kind="data_key",
                scope_group=scope_key.group,
                field_class=field_class,  # type: ignore[arg-type]
                customer_id=customer_id,
                key_version=key.version,
            ),
            KeyWrap(scope_version=scope_key.version, wrapped=wrapped),
        )

    def unwrap(self, wrap: WrappedDataKey) -> DataKey:
        """Open a wrapped data key with the scope key it names (raises `UnwrapError`)."""
        cache_key = (wrap.customer_id, wrap.field_class, wrap.key_version, wrap.group, wrap.scope_version or 0)
        cached = self._cache.get(cache_key)
        if cached is not None:
            self._cache.move_to_end(cache_key)
            return cached
        what = f"data key {wrap.field_class} v{wrap.key_version} of customer {wrap.customer_id} ({wrap.group})"
        scope_key = None
        if wrap.scope_version is not None:
            scope_key = self.scope_key(wrap.group, wrap.field_class, wrap.scope_version)
        if scope_key is None or wrap.wrapped is None:
            raise UnwrapError(what, "no_key")
        ctx = DataKeyWrapContext(
            customer_id=wrap.customer_id,
            field_class=wrap.field_class,
            group=wrap.group,
            scope_version=scope_key.version,
            key_version=wrap.key_version,
        )
        key = DataKey(unwrap_data_key(scope_key, wrap.wrapped, ctx), wrap.key_version)
        self._cache[cache_key] = key
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return key

    def rewrap_edits(self, wrap: WrappedDataKey, new: ScopeKey) -> list[Edit]:
        """Edits that move a wrapped data key under the scope key ``new``, where it
        is (a record's append-only ``ref`` stays as it is). Raises `UnwrapError`."""
        key = self.unwrap(wrap)
        edits = self.wrap_data_key_edits(wrap.customer_id, wrap.field_class, key, new, in_row=wrap.record is None)
        return [e for e in edits if e.collection == "customers" or e.field == "wrap"]

    async def wraps_under(
        self, group: str, field_class: str, scope_version: int, *, batch: int = 2_000
    ) -> AsyncIterator[list[WrappedDataKey]]:
        """Batches of the wraps of data keys under one scope key version: those in
        customer rows (a scan of one column) and the ``data_key`` records. Safe to
        re-wrap each batch before asking for the next."""
        column = row_key_field(field_class)
        after = ""
        while rows := await self.store.column_values("customers", column, after=after, limit=batch):
            after = rows[-1][0]
            found = [
                w for row_id, blob in rows for w in row_key_wraps(row_id, {column: blob})
                if w.group == group and w.scope_version == scope_version
            ]
            if found:
                yield found
        after = ""
        while records := await self.store.find_rows(
            "keys", kind="data_key", scope_group=group, field_class=field_class,
            scope_version=scope_version, deleted=False, limit=batch, after=after,
        ):
            after = records[-1]["row_id"]
            yield [record_wrap(r) for r in records]

    async def data_key_records(self, customer_id: str) -> list[dict[str, Any]]:
        return await self.store.snapshot(lambda snap: data_key_records_in(snap, customer_id))

    async def data_key_wraps(self, customer_id: str, row: Mapping[str, Any] | None,
                             records: list[dict[str, Any]] | None = None) -> list[WrappedDataKey]:
        """Every wrap of the customer's data keys here: those in ``row`` (its stored
        row, or None for one not stored yet) and its ``data_key`` records
        (``records``, when the caller read them with the row: `data_key_records_in`)."""
        wraps = row_key_wraps(customer_id, row) if row is not None else []
        if records is None:
            records = await self.data_key_records(customer_id)
        return wraps + [record_wrap(r) for r in records]

    async def data_keys(
        self, customer_id: str, row: Mapping[str, Any] | None, records: list[dict[str, Any]] | None = None
    ) -> tuple[dict[tuple[str, int], DataKey], dict[str, int]]:
        """The data keys of a customer this node can open, by (class, version), and
        the newest version recorded per class (whether or not it opens here)."""
        keys: dict[tuple[str, int], DataKey] = {}
        newest: dict[str, int] = {}
        for wrap in await self.data_key_wraps(customer_id, row, records):
            cls, version = wrap.field_class, wrap.key_version
            newest[cls] = max(newest.get(cls, 0), version)
            if (cls, version) in keys:
                continue
            try:
                keys[(cls, version)] = self.unwrap(wrap)
            except UnwrapError as exc:
                log.debug("keys.unwrap failed", extra={"row_id": customer_id, "reason": exc.reason})
        return keys, newest

    def new_data_key(self, version: int = 1) -> DataKey:
        return DataKey(new_key(self.random), version)

    # ------------------------------------------------------------ fields

    async def seal_edits(
        self, customer_id: str, row: Mapping[str, Any], values: Mapping[str, str | None]
    ) -> list[Edit]:
        """Edits that store ``values`` (PII field -> plaintext, None clears) sealed under
        the customer's data keys, and the blind indexes of phone and ID number.
        ``row`` is the stored row, or what is known of a new one (its home branch
        and partners). A class's key is made on its first use and wrapped in the
        row for the home group and as records for the other groups, as far as this
        node holds their scope keys.

        Raises `NoScopeKeyError` (a class's key cannot be made or opened here) or
        `NotNormalisableError` (an indexed field that is not a phone or ID number).
        """
        keys, newest = await self.data_keys(customer_id, row)
        current: dict[str, DataKey] = {}
        edits: list[Edit] = []
        for field, text in values.items():
            cls = CUSTOMER_PII[field]
            index = INDEXED.get(field)
            if text is None:
                edits.append(Edit("customers", customer_id, field, "set", None))
                if index is not None:
                    edits.append(Edit("customers", customer_id, index[0], "set", None))
                continue
            key = current.get(cls)
            if key is None:
                if cls in newest:
                    key = keys.get((cls, newest[cls]))
                    if key is None:
                        raise NoScopeKeyError(customer_id, cls, customer_groups(row, self.hq))
                else:
                    key = self.new_data_key()
                    edits.extend(self.wrap_everywhere(customer_id, row, cls, key))
                current[cls] = key
            if index is not None:
                found = self.lookup_index(field, text)  # also refuses what is no phone or ID number
                if found is not None:
                    index_field, index_value = found
                    edits.append(Edit("customers", customer_id, index_field, "set", index_value))
            ctx = FieldContext("customers", customer_id, field, key.version)
            edits.append(Edit("customers", customer_id, field, "set", seal_field(key, ctx, text.encode())))
        return edits

    def wrap_everywhere(self, customer_id: str, row: Mapping[str, Any], field_class: str, key: DataKey) -> list[Edit]:
        """Wrap a new data key under this node's latest scope key of each of the
        customer's groups: in the row for the home group, as records for the rest.
        Raises `NoScopeKeyError` when this node holds none of them."""
        home = home_group(row, self.hq)
        edits: list[Edit] = []
        for group in sorted(customer_groups(row, self.hq)):
            scope_key = self.latest_scope_key(group, field_class)
            if scope_key is not None:
                edits.extend(self.wrap_data_key_edits(customer_id, field_class, key, scope_key, in_row=group == home))
        if not edits:
            raise NoScopeKeyError(customer_id, field_class, customer_groups(row, self.hq))
        return edits

    async def open_customer(self, row: Mapping[str, Any], records: list[dict[str, Any]] | None = None) -> OpenedRow:
        """Open every PII field of a customer row (``records``: its data key
        records, if read with it). A field that does not open is listed in
        ``unavailable`` with its reason; it never fails the whole row."""
        out = OpenedRow()
        customer_id = row["row_id"]
        keys: dict[tuple[str, int], DataKey] | None = None
        for field, cls in CUSTOMER_PII.items():
            sealed = row.get(field)
            if sealed is None:
                out.values[field] = None
                continue
            version = sealed_key_version(sealed)
            if version is None:
                out.unavailable[field] = "format"
                continue
            if keys is None:
                keys, _ = await self.data_keys(customer_id, row, records)
            key = keys.get((cls, version))
            if key is None:
                out.unavailable[field] = "no_key"
                continue
            try:
                plain = open_field(key, FieldContext("customers", customer_id, field, version), sealed)
                out.values[field] = Plaintext(plain.decode())
            except OpenError as exc:
                out.unavailable[field] = exc.reason
            except UnicodeDecodeError:
                out.unavailable[field] = "format"
        if out.unavailable:
            log.warning(
                "pii.unavailable",
                extra={"row_id": customer_id, "fields": ",".join(sorted(out.unavailable)),
                       "reasons": ",".join(sorted(set(out.unavailable.values())))},
            )
        return out

    def lookup_index(self, field: str, text: str) -> tuple[str, int] | None:
        """(index field, index value) of a phone or ID number, or None when this node
        holds no index key. Raises `NotNormalisableError`."""
        index_field = INDEXED[field][0]
        normalised = self.normalised(field, text)
        index_key = self.index_key()
        if index_key is None:
            return None
        return index_field, blind_index(index_key.raw, field, normalised)

    @staticmethod
    def normalised(field: str, text: str) -> str:
        """A phone or ID number in its one canonical form (raises `NotNormalisableError`)."""
        try:
            return INDEXED[field][1](text)
        except (NormalizeError, ValueError) as exc:  # NormalizeError carries no value
            raise NotNormalisableError(field, getattr(exc, "detail", "unrecognised format")) from None


async def flush_wal(store: ReplicaStore) -> bool:
    """Checkpoint the WAL so pages holding retired keys or ciphertext leave it;
    False (logged) when readers hold it and the next key pass must retry."""
    try:
        await store.checkpoint()
    except StoreBusyError:
        log.info("keys.checkpoint busy; next pass")
        return False
    return True


def record_edits(row_id: str, ref: KeyRef, wrap: KeyWrap) -> list[Edit]:
    """The edits that write a key record (``ref`` again is a no-op: it is written once)."""
    return [Edit("keys", row_id, "ref", "set", ref), Edit("keys", row_id, "wrap", "set", wrap)]
