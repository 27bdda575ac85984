"""The phone's keys: its enrolment proof, the scope keys its site wraps for it,
opening its customers' sealed fields, and its signed purge receipts.

The hierarchy is the nodes' (DESIGN.md, Crypto): the site HPKE-wraps its scope
keys for the phone's X25519 key (`take_scope_keys` moves them into the phone's
passphrase-sealed keystore); each customer row carries its data keys wrapped
under its home branch's scope keys (``contact_key``, ...); each personal field
is sealed under the data key of its class (`open_customer`).
"""

from __future__ import annotations

import base64
import logging
import os
from collections.abc import Callable, Mapping
from typing import Any

import msgspec

from crypto.errors import OpenError, UnwrapError
from crypto.identity import NodeIdentity
from crypto.keys import DataKey, ScopeKey
from crypto.keystore import Keystore
from crypto.plaintext import Plaintext
from crypto.seal import FieldContext, open_field, sealed_key_version
from crypto.wrap import DataKeyWrapContext, ScopeWrapContext, unpack_row_key, unwrap_data_key, unwrap_scope_key
from sync.edits import Edit
from sync.ids import new_ulid
from sync.schema import COLLECTIONS, ROW_KEY_FIELDS

log = logging.getLogger(__name__)

#: customer personal field -> its field class
CUSTOMER_PII: dict[str, str] = {f.name: f.pii for f in COLLECTIONS["customers"].pii_fields}  # type: ignore[misc]
_KEY_FIELD = {cls: name for name, cls in ROW_KEY_FIELDS.items()}

ENROL_DOMAIN = "outpost.enroll.v1"
RECEIPT_DOMAIN = "outpost.purge-receipt.v1"
_deterministic = msgspec.msgpack.Encoder(order="deterministic").encode


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode()


def enrolment(identity: NodeIdentity) -> dict[str, object]:
    """The ``node`` member of ``POST /devices/enroll``: the phone's public keys and
    its Ed25519 signature of msgpack ``[domain, node_id, key_version, sign_pub,
    kem_pub]`` (proof that it holds the signing key)."""
    public = identity.public()
    message = msgspec.msgpack.encode((ENROL_DOMAIN, public.node_id, public.key_version, public.sign_pub,
                                      public.kem_pub))
    return {"node_id": public.node_id, "key_version": public.key_version, "sign_pub": _b64(public.sign_pub),
            "kem_pub": _b64(public.kem_pub), "signature": _b64(identity.sign(message))}


class WrappedScopeKey(msgspec.Struct, kw_only=True):
    group: str
    field_class: str
    version: int
    wrapped: str


class PhoneKeys(msgspec.Struct, kw_only=True):
    """The answer of ``POST /devices/keys``."""

    node: str
    key_version: int
    keys: list[WrappedScopeKey]
    masked: list[str] = []


def take_scope_keys(keystore: Keystore, answer: PhoneKeys) -> tuple[int, int]:
    """Unwrap the offered scope keys into ``keystore`` and destroy every held key
    not offered (rotated away, or a class no longer granted); saves it when it
    changed. Returns (keys added, keys destroyed). Raises `UnwrapError` for a key
    that was not wrapped for this phone."""
    identity = keystore.identity_for(answer.key_version)
    if answer.node != keystore.node_id or identity is None:
        raise UnwrapError(f"scope keys for {answer.node} v{answer.key_version}", "wrong_recipient")
    before = {(k.group, k.field_class, k.version) for k in keystore.scope_keys()}
    offered = set()
    for item in answer.keys:
        ctx = ScopeWrapContext(recipient=answer.node, recipient_key_version=answer.key_version, group=item.group,
                               field_class=item.field_class, version=item.version)
        wrapped = base64.urlsafe_b64decode(item.wrapped + "=" * (-len(item.wrapped) % 4))
        raw = unwrap_scope_key(identity.kem_key, wrapped, ctx)
        keystore.add_scope_key(ScopeKey(raw, item.version, item.group, item.field_class))
        offered.add((item.group, item.field_class, item.version))
    for group, field_class, version in sorted(before - offered):
        lowest = min((v for g, c, v in offered if (g, c) == (group, field_class)), default=None)
        if lowest is None or version < lowest:
            keystore.drop_scope_keys_below(group, field_class, version + 1)
    after = {(k.group, k.field_class, k.version) for k in keystore.scope_keys()}
    if after != before:
        keystore.save()
    return len(after - before), len(before - after)


def data_key(keystore: Keystore, customer_id: str, field_class: str, row: Mapping[str, Any]) -> DataKey:
    """The customer's data key of one class, from the wrap its row carries;
    raises `UnwrapError` (``no_key`` when no scope key held opens it)."""
    blob = row.get(_KEY_FIELD[field_class])
    what = f"{field_class} data key of customer {customer_id}"
    if blob is None:
        raise UnwrapError(what, "no_key")
    wrap = unpack_row_key(blob, what)
    scope = keystore.scope_key(wrap.group, field_class, wrap.scope_version)
    if scope is None:
        raise UnwrapError(what, "no_key")
    ctx = DataKeyWrapContext(customer_id=customer_id, field_class=field_class, group=wrap.group,
                             scope_version=wrap.scope_version, key_version=wrap.key_version)
    return DataKey(unwrap_data_key(scope, wrap.wrapped, ctx), wrap.key_version)


def open_customer(keystore: Keystore, row: Mapping[str, Any]) -> tuple[dict[str, Plaintext], dict[str, str]]:
    """The personal fields of a customer row this phone holds, opened: (field ->
    value, field -> reason code it did not open). Empty fields are in neither."""
    customer_id = row["row_id"]
    values: dict[str, Plaintext] = {}
    unavailable: dict[str, str] = {}
    keys: dict[str, DataKey | str] = {}
    for field, field_class in CUSTOMER_PII.items():
        sealed = row.get(field)
        if sealed is None:
            continue
        if field_class not in keys:
            try:
                keys[field_class] = data_key(keystore, customer_id, field_class, row)
            except UnwrapError as exc:
                keys[field_class] = exc.reason
        key = keys[field_class]
        if isinstance(key, str):
            unavailable[field] = key
            continue
        version = sealed_key_version(sealed)
        if version != key.version:
            unavailable[field] = "wrong_version"
            continue
        try:
            values[field] = Plaintext(open_field(key, FieldContext("customers", customer_id, field, version),
                                                 sealed).decode())
        except OpenError as exc:
            unavailable[field] = exc.reason
        except UnicodeDecodeError:
            unavailable[field] = "format"
    if unavailable:
        log.warning("pii.unavailable", extra={"row_id": customer_id, "fields": ",".join(sorted(unavailable))})
    return values, unavailable


def purge_receipts(identity_of: Callable[[], NodeIdentity], now_ms: Callable[[], int]) -> Callable[[list[str], int], list[Edit]]:
    """The replicator's purge hook: a ``purge_receipts`` row naming the rows the
    site told the phone to purge, signed (Ed25519) over the deterministic msgpack
    of ``[domain, node, purged_at_ms, rows, keys_purged, key_version]``."""

    def receipt(rows: list[str], keys_purged: int) -> list[Edit]:
        identity = identity_of()
        at = now_ms()
        signed = _deterministic([RECEIPT_DOMAIN, identity.node_id, at, sorted(rows), keys_purged,
                                 identity.key_version])
        values = {"node": identity.node_id, "purged_at_ms": at, "rows": sorted(rows), "keys_purged": keys_purged,
                  "key_version": identity.key_version, "signature": identity.sign(signed)}
        row_id = new_ulid(at, os.urandom(10))
        return [Edit("purge_receipts", row_id, name, "set", value) for name, value in values.items()]

    return receipt
