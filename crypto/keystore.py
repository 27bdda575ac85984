"""The node's keystore: its identities and scope keys, in a file sealed with a passphrase.

The keystore is a file of its own, next to the database and never inside it, so a
copy of the database holds no key that opens it. The file is::

    b"OUTPOST-KEYSTORE\\n" | format (1 byte, 0x01) | header length (u16 big-endian)
    | header (MessagePack map: kdf "scrypt", n, r, p, salt 16 bytes, nonce 12 bytes,
      sealed_bytes: the length of what follows)
    | AES-256-GCM ciphertext + tag of the MessagePack `KeystoreContents`

The AES key is scrypt(passphrase, salt, n, r, p); everything before the
ciphertext is the associated data, so an edited header fails like a wrong
passphrase. The passphrase (NFC-normalised, UTF-8) is never stored; a `Keystore`
keeps the derived key, so it can save again without running scrypt, with a fresh
nonce each time.
"""

from __future__ import annotations

import contextlib
import os
import struct
import tempfile
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from crypto.errors import (
    KeystoreExistsError,
    KeystoreFormatError,
    KeystoreMissingError,
    KeystorePassphraseError,
)
from crypto.identity import NodeIdentity
from crypto.keys import KEY_BYTES, ScopeKey

MAGIC = b"OUTPOST-KEYSTORE\n"
KEYSTORE_FORMAT = 1
FILE_MODE = 0o600
SCRYPT_N = 2**15
SCRYPT_R = 8
SCRYPT_P = 1
#: bounds checked before running scrypt on a header read from disk (2**20 x r=8 is 1 GiB)
MAX_SCRYPT_N = 2**20
MAX_SCRYPT_R = 32
MAX_SCRYPT_P = 16
SALT_BYTES = 16
NONCE_BYTES = 12
TAG_BYTES = 16

_LENGTH = struct.Struct(">H")
_PREFIX_BYTES = len(MAGIC) + 1 + _LENGTH.size


class IdentityRecord(msgspec.Struct, array_like=True):
    """Raw private keys of one identity version. Its repr hides the keys."""

    key_version: int
    sign_key: bytes
    kem_key: bytes

    def __repr__(self) -> str:
        return f"IdentityRecord(key_version={self.key_version}, sign_key=***, kem_key=***)"

    def __rich_repr__(self) -> Iterator[tuple[str, object]]:
        yield "key_version", self.key_version


class ScopeKeyRecord(msgspec.Struct, array_like=True):
    """A raw scope key. Its repr hides the key."""

    group: str
    field_class: str
    version: int
    key: bytes

    def __repr__(self) -> str:
        return (f"ScopeKeyRecord(group={self.group!r}, field_class={self.field_class!r}, "
                f"version={self.version}, key=***)")

    def __rich_repr__(self) -> Iterator[tuple[str, object]]:
        yield "group", self.group
        yield "field_class", self.field_class
        yield "version", self.version


class KeystoreContents(msgspec.Struct, kw_only=True):
    node_id: str
    identities: list[IdentityRecord]
    scope_keys: list[ScopeKeyRecord] = []


class _Header(msgspec.Struct, forbid_unknown_fields=True):
    kdf: str
    n: int
    r: int
    p: int
    salt: Annotated[bytes, msgspec.Meta(min_length=SALT_BYTES, max_length=SALT_BYTES)]
    nonce: Annotated[bytes, msgspec.Meta(min_length=NONCE_BYTES, max_length=NONCE_BYTES)]
    #: length of the ciphertext that follows, so a cut file reads as truncated, not as a wrong passphrase
    sealed_bytes: Annotated[int, msgspec.Meta(ge=TAG_BYTES)] = TAG_BYTES


_encode = msgspec.msgpack.Encoder().encode
_decode_header = msgspec.msgpack.Decoder(_Header).decode
_decode_contents = msgspec.msgpack.Decoder(KeystoreContents).decode


def _derive(passphrase: str, header: _Header) -> bytes:
    secret = unicodedata.normalize("NFC", passphrase).encode()
    return Scrypt(salt=header.salt, length=KEY_BYTES, n=header.n, r=header.r, p=header.p).derive(secret)


def _new_kdf(passphrase: str, n: int) -> tuple[_Header, bytes]:
    """A header with a fresh salt, and the key ``passphrase`` derives with it."""
    if not passphrase:
        raise ValueError("the keystore passphrase is empty")
    if not (1 < n <= MAX_SCRYPT_N and n & (n - 1) == 0):
        raise ValueError(f"scrypt n must be a power of 2 between 2 and {MAX_SCRYPT_N}, got {n}")
    header = _Header("scrypt", n, SCRYPT_R, SCRYPT_P, os.urandom(SALT_BYTES), bytes(NONCE_BYTES))
    return header, _derive(passphrase, header)


class Keystore:
    """An open keystore. Changes are in memory until `save`."""

    def __init__(self, path: str | os.PathLike[str], contents: KeystoreContents, key: bytes, header: _Header) -> None:
        """Use `create_keystore` or `open_keystore`; ``key`` is the scrypt output for ``header``."""
        self.path = Path(path)
        self.contents = contents
        self._key = key
        self._header = header
        #: identities already built from their raw keys (building one costs as much as a signature)
        self._built: dict[tuple[int, bytes, bytes], NodeIdentity] = {}

    def __repr__(self) -> str:
        return f"Keystore(path={str(self.path)!r}, node_id={self.node_id!r})"

    @property
    def node_id(self) -> str:
        return self.contents.node_id

    # identities

    @property
    def identity(self) -> NodeIdentity:
        """The current identity: the highest key version."""
        record = max(self.contents.identities, key=lambda r: r.key_version)
        return self._build(record)

    def identity_for(self, key_version: int) -> NodeIdentity | None:
        for record in self.contents.identities:
            if record.key_version == key_version:
                return self._build(record)
        return None

    def _build(self, record: IdentityRecord) -> NodeIdentity:
        key = (record.key_version, record.sign_key, record.kem_key)
        built = self._built.get(key)
        if built is None:
            built = self._built[key] = NodeIdentity.from_raw(self.node_id, *key)
        return built

    def add_identity(self, identity: NodeIdentity) -> None:
        """Add a rotated identity. Adding the same one again does nothing; ValueError
        for another node's identity or different keys under a version already held."""
        if identity.node_id != self.node_id:
            raise ValueError(f"identity of node {identity.node_id} does not belong in the keystore of {self.node_id}")
        sign_raw, kem_raw = identity.to_raw()
        for record in self.contents.identities:
            if record.key_version == identity.key_version:
                if (record.sign_key, record.kem_key) != (sign_raw, kem_raw):
                    raise ValueError(f"the keystore holds other keys as identity version {identity.key_version}")
                return
        self.contents.identities.append(IdentityRecord(identity.key_version, sign_raw, kem_raw))
        self.contents.identities.sort(key=lambda r: r.key_version)

    def drop_identities_below(self, key_version: int) -> int:
        """Forget identities older than ``key_version``; how many. ValueError if none would remain."""
        keep = [r for r in self.contents.identities if r.key_version >= key_version]
        if not keep:
            raise ValueError(f"the keystore holds no identity of version {key_version} or above to keep")
        dropped = len(self.contents.identities) - len(keep)
        self.contents.identities = keep
        return dropped

    # scope keys

    def scope_key(self, group: str, field_class: str, version: int) -> ScopeKey | None:
        for record in self.contents.scope_keys:
            if (record.group, record.field_class, record.version) == (group, field_class, version):
                return ScopeKey(record.key, record.version, record.group, record.field_class)
        return None

    def scope_keys(self, group: str | None = None, field_class: str | None = None) -> list[ScopeKey]:
        """Every scope key held, of one group and/or class if given, by group, class and version."""
        records = sorted(
            (r for r in self.contents.scope_keys
             if (group is None or r.group == group) and (field_class is None or r.field_class == field_class)),
            key=lambda r: (r.group, r.field_class, r.version),
        )
        return [ScopeKey(r.key, r.version, r.group, r.field_class) for r in records]

    def latest_scope_key(self, group: str, field_class: str) -> ScopeKey | None:
        held = self.scope_keys(group, field_class)
        return held[-1] if held else None

    def add_scope_key(self, key: ScopeKey) -> None:
        """Hold ``key``. Adding it again does nothing; ValueError if another key holds its version."""
        for record in self.contents.scope_keys:
            if (record.group, record.field_class, record.version) == (key.group, key.field_class, key.version):
                if record.key != key.raw:
                    raise ValueError(
                        f"the keystore holds another scope key {key.group}/{key.field_class} v{key.version}"
                    )
                return
        self.contents.scope_keys.append(ScopeKeyRecord(key.group, key.field_class, key.version, key.raw))

    def drop_scope_keys_below(self, group: str, field_class: str, version: int) -> int:
        """Forget the keys of ``group``/``field_class`` older than ``version``; how many."""
        keep = [
            r for r in self.contents.scope_keys
            if not (r.group == group and r.field_class == field_class and r.version < version)
        ]
        dropped = len(self.contents.scope_keys) - len(keep)
        self.contents.scope_keys = keep
        return dropped

    # file

    def save(self) -> None:
        """Write the file atomically (temp file, fsync, rename, fsync the directory), mode 0o600."""
        _write_atomic(self.path, self._seal())

    def _seal(self) -> bytes:
        plain = _encode(self.contents)
        header = msgspec.structs.replace(
            self._header, nonce=os.urandom(NONCE_BYTES), sealed_bytes=len(plain) + TAG_BYTES
        )
        encoded_header = _encode(header)
        aad = MAGIC + bytes((KEYSTORE_FORMAT,)) + _LENGTH.pack(len(encoded_header)) + encoded_header
        return aad + AESGCM(self._key).encrypt(header.nonce, plain, aad)


def create_keystore(path: str | os.PathLike[str], node_id: str, passphrase: str, *, n: int = SCRYPT_N) -> Keystore:
    """A new keystore at ``path`` holding a fresh identity of version 1, saved.

    Raises `KeystoreExistsError` if a file is at ``path`` (checked again
    atomically when the file is put in place), ValueError for an empty passphrase.
    """
    path = Path(path)
    if path.exists():
        raise KeystoreExistsError(path)
    sign_raw, kem_raw = NodeIdentity.generate(node_id, 1).to_raw()
    contents = KeystoreContents(node_id=node_id, identities=[IdentityRecord(1, sign_raw, kem_raw)])
    header, key = _new_kdf(passphrase, n)
    keystore = Keystore(path, contents, key, header)
    _write_atomic(path, keystore._seal(), exclusive=True)
    return keystore


def open_keystore(path: str | os.PathLike[str], passphrase: str) -> Keystore:
    """Open the keystore at ``path``.

    Raises `KeystoreMissingError`, `KeystorePassphraseError` (wrong passphrase, or
    an altered file) or `KeystoreFormatError` (not a keystore, truncated, or a
    format this version does not read).
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise KeystoreMissingError(path) from None
    header, aad = _parse_header(path, data)
    ciphertext = data[len(aad):]
    if len(ciphertext) < header.sealed_bytes:
        raise KeystoreFormatError(path, "truncated: the file ends inside the sealed contents")
    if len(ciphertext) > header.sealed_bytes:
        raise KeystoreFormatError(path, "trailing bytes after the sealed contents")
    if not passphrase:
        raise KeystorePassphraseError(path)
    key = _derive(passphrase, header)
    try:
        plain = AESGCM(key).decrypt(header.nonce, ciphertext, aad)
    except InvalidTag:
        raise KeystorePassphraseError(path) from None
    try:
        contents = _decode_contents(plain)
    except msgspec.DecodeError:
        # authentic but unreadable: written by another version; the message could quote key bytes
        raise KeystoreFormatError(path, "the sealed contents do not decode as keystore contents") from None
    if not contents.identities:
        raise KeystoreFormatError(path, "the keystore holds no node identity")
    return Keystore(path, contents, key, header)


def change_passphrase(keystore: Keystore, new_passphrase: str, *, n: int = SCRYPT_N) -> None:
    """Re-seal ``keystore`` under ``new_passphrase`` with a new salt, and save it.

    If the save fails, the keystore keeps its old passphrase, in memory as on disk.
    """
    old = keystore._header, keystore._key
    keystore._header, keystore._key = _new_kdf(new_passphrase, n)
    try:
        keystore.save()
    except BaseException:
        keystore._header, keystore._key = old
        raise


def _parse_header(path: Path, data: bytes) -> tuple[_Header, bytes]:
    """The header and the associated data (every byte before the ciphertext)."""
    if not data.startswith(MAGIC):
        if MAGIC.startswith(data):
            raise KeystoreFormatError(path, "truncated: the file ends inside the magic")
        raise KeystoreFormatError(path, "not an Outpost keystore (bad magic)")
    if len(data) < _PREFIX_BYTES:
        raise KeystoreFormatError(path, "truncated: the file ends inside the header")
    if data[len(MAGIC)] != KEYSTORE_FORMAT:
        raise KeystoreFormatError(path, f"format {data[len(MAGIC)]} is not one this version reads ({KEYSTORE_FORMAT})")
    (length,) = _LENGTH.unpack_from(data, len(MAGIC) + 1)
    end = _PREFIX_BYTES + length
    if len(data) < end:
        raise KeystoreFormatError(path, "truncated: the file ends inside the header")
    try:
        header = _decode_header(data[_PREFIX_BYTES:end])
    except msgspec.DecodeError as exc:
        raise KeystoreFormatError(path, f"header does not decode: {exc}") from None
    if header.kdf != "scrypt":
        raise KeystoreFormatError(path, "header names a kdf other than scrypt")
    n_ok = 1 < header.n <= MAX_SCRYPT_N and header.n & (header.n - 1) == 0
    if not (n_ok and 1 <= header.r <= MAX_SCRYPT_R and 1 <= header.p <= MAX_SCRYPT_P):
        raise KeystoreFormatError(
            path, f"scrypt parameters out of range (n a power of 2 up to {MAX_SCRYPT_N}, "
                  f"r up to {MAX_SCRYPT_R}, p up to {MAX_SCRYPT_P})"
        )
    return header, data[:end]


def _write_atomic(path: Path, data: bytes, *, exclusive: bool = False) -> None:
    """Put ``data`` at ``path`` whole or not at all, mode 0o600 (``exclusive``: never replace a file)."""
    directory = path.parent
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), FILE_MODE)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if exclusive:
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise KeystoreExistsError(path) from None
        else:
            os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
