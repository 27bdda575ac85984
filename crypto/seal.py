"""Field sealing: one PII value under a customer's data key, with AES-256-GCM.

A sealed value is::

    header: format (1 byte, 0x01) | key_version (u32 big-endian)
    | nonce (12 bytes) | ciphertext + tag (16 bytes)

The associated data (`field_aad`) holds the header and binds the value to its
collection, row, field and key version: a ciphertext copied to another field or
another customer fails to open with reason ``tag``, and so does any change to
any byte, header included (a changed format byte or key version is reported as
``format`` or ``wrong_version``).

Nonces are random (96 bits). Each customer and field class has its own data key,
so one key seals a few fields a few times, far below the ~2^32 messages at which
random GCM nonces start to risk a collision.
"""

from __future__ import annotations

import os
import struct

import msgspec
from cryptography.exceptions import InvalidTag

from crypto.errors import OpenError
from crypto.keys import DataKey

SEAL_FORMAT = 1  # seal_field and open_field spell these constants as literals
NONCE_BYTES = 12
TAG_BYTES = 16
HEADER_BYTES = 5
#: the shortest sealed value: header, nonce and the tag of an empty plaintext
MIN_SEALED_BYTES = HEADER_BYTES + NONCE_BYTES + TAG_BYTES
#: domain label, the first element of the associated data
AAD_LABEL = "outpost/field"

_HEADER = struct.Struct(">BI")
_pack_header = _HEADER.pack
_unpack_header = _HEADER.unpack_from
_encode = msgspec.msgpack.Encoder().encode
_urandom = os.urandom


class FieldContext(msgspec.Struct, frozen=True):
    """Where a sealed value lives, and the key version that sealed it."""

    collection: str
    row_id: str
    field: str
    key_version: int


def field_aad(ctx: FieldContext) -> bytes:
    """The associated data of a field: the MessagePack array
    ``[AAD_LABEL, header, collection, row_id, field, key_version]``, where
    ``header`` is the 5-byte header of the sealed value (format byte, u32 key
    version) as a bin item.

    MessagePack prefixes every string with its length, so no two contexts share
    an encoding. msgspec writes the smallest form of each item (fixarray, fixstr
    or str8/str16, bin8, positive fixint or uint8/16/32), which is what a client
    in another language must reproduce; ``tests/crypto/test_seal.py`` pins the
    bytes. Opening puts the header read from the sealed value in its place, so
    the header is authenticated with the rest.
    """
    version = ctx.key_version
    return _encode((AAD_LABEL, _pack_header(SEAL_FORMAT, version), ctx.collection, ctx.row_id, ctx.field, version))


def seal_field(key: DataKey, ctx: FieldContext, plaintext: bytes) -> bytes:
    """Seal ``plaintext`` under ``key`` with a fresh random nonce.

    Raises ValueError if ``ctx.key_version`` is not ``key.version``.
    """
    # the body of _seal_with_nonce, with field_aad and the constants inlined: a Python
    # call costs a tenth of the cipher's own time, and this runs once per field
    # (bench/bench_seal.py); test_seal.py's known answers hold both paths to one layout
    version = ctx.key_version
    if version != key.version:
        raise ValueError(f"context names key version {version}, the key is version {key.version}")
    nonce = _urandom(12)
    header = _pack_header(1, version)
    aad = _encode(("outpost/field", header, ctx.collection, ctx.row_id, ctx.field, version))
    return header + nonce + key.cipher.encrypt(nonce, plaintext, aad)


def _seal_with_nonce(key: DataKey, ctx: FieldContext, plaintext: bytes, nonce: bytes) -> bytes:
    """`seal_field` with a chosen nonce: for known-answer tests only (a nonce must never repeat)."""
    version = ctx.key_version
    if version != key.version:
        raise ValueError(f"context names key version {version}, the key is version {key.version}")
    if len(nonce) != NONCE_BYTES:
        raise ValueError(f"a nonce is {NONCE_BYTES} bytes")
    return _pack_header(SEAL_FORMAT, version) + nonce + key.cipher.encrypt(nonce, plaintext, field_aad(ctx))


def sealed_key_version(sealed: bytes) -> int | None:
    """The key version in a sealed value's header; None if it is not a sealed value of this format."""
    if len(sealed) < MIN_SEALED_BYTES or sealed[0] != SEAL_FORMAT:
        return None
    return _unpack_header(sealed)[1]


def open_field(key: DataKey, ctx: FieldContext, sealed: bytes) -> bytes:
    """The plaintext of ``sealed``, which must have been sealed with ``key`` at ``ctx``.

    Raises `OpenError` with reason ``format`` (too short, unknown format byte),
    ``wrong_version`` (the header, the context and the key do not all name the
    same key version) or ``tag`` (altered, moved, or another key).
    """
    version = ctx.key_version
    if len(sealed) < 33 or version != key.version:  # 33: MIN_SEALED_BYTES, literal on the hot path
        raise _open_error(key, ctx, sealed)
    try:
        # [5:17] is the nonce, [17:] the ciphertext; the header [:5] is checked by the tag,
        # being in the associated data (field_aad)
        return key.cipher.decrypt(
            sealed[5:17],
            sealed[17:],
            _encode(("outpost/field", sealed[:5], ctx.collection, ctx.row_id, ctx.field, version)),
        )
    except InvalidTag:
        raise _open_error(key, ctx, sealed) from None


def _open_error(key: DataKey, ctx: FieldContext, sealed: bytes) -> OpenError:
    """Why ``sealed`` does not open with ``key`` at ``ctx`` (off the fast path)."""
    header_version = sealed_key_version(sealed)
    if header_version is None:
        reason = "format"
    elif not header_version == ctx.key_version == key.version:
        reason = "wrong_version"
    else:
        reason = "tag"
    return OpenError(ctx.collection, ctx.row_id, ctx.field, reason)
