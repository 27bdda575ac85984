"""Key wrapping: scope keys to nodes (HPKE), data keys under scope keys (AES-GCM).

A wrapped scope key is ``0x01 | HPKE enc (32) | ciphertext + tag (48)``: HPKE base
mode, single shot, suite DHKEM(X25519, HKDF-SHA256) / HKDF-SHA256 / AES-256-GCM
(RFC 9180). Single-shot HPKE takes no associated data, so the whole
`ScopeWrapContext` goes into ``info``, as RFC 9180 section 8.1 advises.

A wrapped data key is ``0x01 | nonce (12) | ciphertext + tag (48)``: AES-256-GCM
under the scope key, with the `DataKeyWrapContext` as associated data.

A data key carried in its customer's row (`pack_row_key`) is the wrapped data
key behind a label saying what opens it: ``0x01 | key version (u32) | scope
version (u32) | group length (u8) | group | wrapped data key``. The label is
bound again by the wrap's associated data, so an altered label fails with ``tag``.

Both contexts are encoded as a MessagePack array behind a domain label and the
format byte (`scope_wrap_info`, `data_key_aad`). A key unwraps only with exactly the
context it was wrapped with: another recipient, customer, class, group or
version fails with reason ``tag``. HPKE cannot tell a key wrapped for another
node from an altered one; ``wrong_recipient`` is for callers that find a keys
record addressed to another node before trying.
"""

from __future__ import annotations

import os
import struct
from typing import NamedTuple

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.hpke import AEAD, KDF, KEM, Suite

from crypto.errors import UnwrapError
from crypto.keys import KEY_BYTES, ScopeKey

WRAP_FORMAT = 1
SCOPE_INFO_LABEL = "outpost/scope-key"
DATA_KEY_AAD_LABEL = "outpost/data-key"
HPKE_ENC_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
WRAPPED_SCOPE_KEY_BYTES = 1 + HPKE_ENC_BYTES + KEY_BYTES + TAG_BYTES
WRAPPED_DATA_KEY_BYTES = 1 + NONCE_BYTES + KEY_BYTES + TAG_BYTES

_SUITE = Suite(KEM.X25519, KDF.HKDF_SHA256, AEAD.AES_256_GCM)
_encode = msgspec.msgpack.Encoder().encode


class ScopeWrapContext(msgspec.Struct, frozen=True):
    """A scope key addressed to one node key: bound into HPKE ``info``."""

    recipient: str
    recipient_key_version: int
    group: str
    field_class: str
    version: int


class DataKeyWrapContext(msgspec.Struct, frozen=True):
    """A customer's data key for one class, under one scope key version: the AAD."""

    customer_id: str
    field_class: str
    group: str
    scope_version: int
    key_version: int


def scope_wrap_info(ctx: ScopeWrapContext) -> bytes:
    """HPKE ``info``: MessagePack ``[label, format, recipient, recipient_key_version, group, field_class, version]``."""
    return _encode((
        SCOPE_INFO_LABEL, WRAP_FORMAT, ctx.recipient, ctx.recipient_key_version, ctx.group, ctx.field_class,
        ctx.version,
    ))


def data_key_aad(ctx: DataKeyWrapContext) -> bytes:
    """AAD: MessagePack ``[label, format, customer_id, field_class, group, scope_version, key_version]``."""
    return _encode((
        DATA_KEY_AAD_LABEL, WRAP_FORMAT, ctx.customer_id, ctx.field_class, ctx.group, ctx.scope_version,
        ctx.key_version,
    ))


def _scope_what(ctx: ScopeWrapContext) -> str:
    return f"scope key {ctx.group}/{ctx.field_class} v{ctx.version} for node {ctx.recipient}"


def _data_key_what(ctx: DataKeyWrapContext) -> str:
    return (f"data key {ctx.field_class} v{ctx.key_version} of customer {ctx.customer_id} "
            f"under scope key {ctx.group}/{ctx.field_class} v{ctx.scope_version}")


def wrap_scope_key(recipient_kem_pub: bytes, key: bytes, ctx: ScopeWrapContext) -> bytes:
    """Wrap a 32-byte scope key for the node whose raw X25519 public key is ``recipient_kem_pub``.

    Every call draws a fresh ephemeral key, so two wraps of one key differ.
    Raises ValueError for a key or public key of the wrong length.
    """
    if len(key) != KEY_BYTES:
        raise ValueError(f"a scope key is {KEY_BYTES} bytes, got {len(key)}")
    public = X25519PublicKey.from_public_bytes(recipient_kem_pub)
    return bytes((WRAP_FORMAT,)) + _SUITE.encrypt(key, public, info=scope_wrap_info(ctx))


def unwrap_scope_key(recipient_kem_key: X25519PrivateKey, sealed: bytes, ctx: ScopeWrapContext) -> bytes:
    """The scope key in ``sealed``; raises `UnwrapError` (``format`` or ``tag``)."""
    if len(sealed) != WRAPPED_SCOPE_KEY_BYTES or sealed[0] != WRAP_FORMAT:
        raise UnwrapError(_scope_what(ctx), "format")
    try:
        return _SUITE.decrypt(sealed[1:], recipient_kem_key, info=scope_wrap_info(ctx))
    except InvalidTag:
        raise UnwrapError(_scope_what(ctx), "tag") from None


def _check_scope(scope_key: ScopeKey, ctx: DataKeyWrapContext) -> None:
    if (ctx.scope_version, ctx.group, ctx.field_class) != (scope_key.version, scope_key.group, scope_key.field_class):
        raise ValueError(
            f"context names scope key {ctx.group}/{ctx.field_class} v{ctx.scope_version}, "
            f"the key given is {scope_key.group}/{scope_key.field_class} v{scope_key.version}"
        )


def wrap_data_key(scope_key: ScopeKey, raw: bytes, ctx: DataKeyWrapContext) -> bytes:
    """Wrap a 32-byte data key under ``scope_key`` with a fresh random nonce.

    Raises ValueError if ``ctx`` names another scope key (group, class or version)
    than ``scope_key``, or if ``raw`` is not 32 bytes.
    """
    return _wrap_data_key_with_nonce(scope_key, raw, ctx, os.urandom(NONCE_BYTES))


def _wrap_data_key_with_nonce(scope_key: ScopeKey, raw: bytes, ctx: DataKeyWrapContext, nonce: bytes) -> bytes:
    """`wrap_data_key` with a chosen nonce: for known-answer tests only."""
    _check_scope(scope_key, ctx)
    if len(raw) != KEY_BYTES:
        raise ValueError(f"a data key is {KEY_BYTES} bytes, got {len(raw)}")
    if len(nonce) != NONCE_BYTES:
        raise ValueError(f"a nonce is {NONCE_BYTES} bytes")
    return bytes((WRAP_FORMAT,)) + nonce + scope_key.cipher.encrypt(nonce, raw, data_key_aad(ctx))


def unwrap_data_key(scope_key: ScopeKey, sealed: bytes, ctx: DataKeyWrapContext) -> bytes:
    """The data key in ``sealed``; raises `UnwrapError` (``format`` or ``tag``).

    Raises ValueError if ``ctx`` names another scope key than ``scope_key``.
    """
    _check_scope(scope_key, ctx)
    if len(sealed) != WRAPPED_DATA_KEY_BYTES or sealed[0] != WRAP_FORMAT:
        raise UnwrapError(_data_key_what(ctx), "format")
    try:
        return scope_key.cipher.decrypt(sealed[1 : 1 + NONCE_BYTES], sealed[1 + NONCE_BYTES :], data_key_aad(ctx))
    except InvalidTag:
        raise UnwrapError(_data_key_what(ctx), "tag") from None


ROW_KEY_FORMAT = 1
_ROW_KEY_HEAD = struct.Struct(">BIIB")


class RowKey(NamedTuple):
    """A data key carried in its customer's row: which scope key wraps it, and the wrap."""

    group: str
    scope_version: int
    key_version: int
    wrapped: bytes


def pack_row_key(key: RowKey) -> bytes:
    """The labelled form of a wrapped data key stored in a customer row."""
    group = key.group.encode()
    return _ROW_KEY_HEAD.pack(ROW_KEY_FORMAT, key.key_version, key.scope_version, len(group)) + group + key.wrapped


def unpack_row_key(blob: bytes, what: str) -> RowKey:
    """Read a `pack_row_key` blob; raises `UnwrapError` (``format``) naming ``what``."""
    head = _ROW_KEY_HEAD.size
    if len(blob) < head or blob[0] != ROW_KEY_FORMAT:
        raise UnwrapError(what, "format")
    _, key_version, scope_version, glen = _ROW_KEY_HEAD.unpack_from(blob)
    wrapped = blob[head + glen :]
    if len(wrapped) != WRAPPED_DATA_KEY_BYTES or key_version < 1 or scope_version < 1:
        raise UnwrapError(what, "format")
    try:
        group = blob[head : head + glen].decode()
    except UnicodeDecodeError:
        raise UnwrapError(what, "format") from None
    return RowKey(group, scope_version, key_version, wrapped)
