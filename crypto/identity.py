"""A node's identity: an Ed25519 key that signs, an X25519 key that receives wrapped keys.

Both are versioned together (``key_version``): rotating a node's keys makes a new
identity of the next version, and the keystore keeps older ones until every key
wrapped for them has been re-wrapped.
"""

from __future__ import annotations

import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

from crypto.errors import SignatureError


class NodePublicKeys(msgspec.Struct, frozen=True):
    """What HQ's registry holds of an enrolled node: raw 32-byte public keys."""

    node_id: str
    key_version: int
    sign_pub: bytes
    kem_pub: bytes


def _raw_public(key: Ed25519PrivateKey | X25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def _raw_private(key: Ed25519PrivateKey | X25519PrivateKey) -> bytes:
    return key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())


class NodeIdentity:
    """A node's private keys of one version. ``kem_key`` is what `crypto.wrap.unwrap_scope_key` takes."""

    __slots__ = ("node_id", "key_version", "sign_key", "kem_key")

    def __init__(self, node_id: str, key_version: int, sign_key: Ed25519PrivateKey, kem_key: X25519PrivateKey) -> None:
        self.node_id = node_id
        self.key_version = key_version
        self.sign_key = sign_key
        self.kem_key = kem_key

    @classmethod
    def generate(cls, node_id: str, key_version: int = 1) -> NodeIdentity:
        return cls(node_id, key_version, Ed25519PrivateKey.generate(), X25519PrivateKey.generate())

    @classmethod
    def from_raw(cls, node_id: str, key_version: int, sign_raw: bytes, kem_raw: bytes) -> NodeIdentity:
        """From the 32-byte raw private keys of `to_raw`; ValueError if either is malformed."""
        return cls(
            node_id, key_version, Ed25519PrivateKey.from_private_bytes(sign_raw),
            X25519PrivateKey.from_private_bytes(kem_raw),
        )

    def to_raw(self) -> tuple[bytes, bytes]:
        """The raw private keys ``(sign, kem)``, 32 bytes each: for the keystore only."""
        return _raw_private(self.sign_key), _raw_private(self.kem_key)

    def public(self) -> NodePublicKeys:
        return NodePublicKeys(self.node_id, self.key_version, _raw_public(self.sign_key), _raw_public(self.kem_key))

    def sign(self, data: bytes) -> bytes:
        """A 64-byte Ed25519 signature of ``data``."""
        return self.sign_key.sign(data)

    def __repr__(self) -> str:
        return f"NodeIdentity(node_id={self.node_id!r}, key_version={self.key_version})"


def verify_signature(sign_pub: bytes, signature: bytes, data: bytes, what: str) -> None:
    """Check an Ed25519 signature against a raw 32-byte public key.

    Raises `SignatureError` naming ``what`` (e.g. ``"push batch 17 from branch-a"``)
    if the signature does not verify, including when ``sign_pub`` is not a valid
    public key: a registry entry is data that came over the wire like the signature.
    """
    try:
        Ed25519PublicKey.from_public_bytes(sign_pub).verify(signature, data)
    except (InvalidSignature, ValueError):
        raise SignatureError(what) from None
