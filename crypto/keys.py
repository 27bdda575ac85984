"""Symmetric keys of the hierarchy: customer data keys and scope keys.

Both are 32-byte AES-256-GCM keys with a version. Each object builds its
``AESGCM`` once: sealing many fields under one key then costs one cipher call
per field and no key setup.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_BYTES = 32
#: versions travel as u32 in sealed headers
MAX_VERSION = 2**32 - 1


def new_key(random: Callable[[int], bytes] = os.urandom) -> bytes:
    """32 fresh random bytes (``random`` is injectable for tests)."""
    raw = random(KEY_BYTES)
    if len(raw) != KEY_BYTES:
        raise ValueError(f"the random source returned {len(raw)} bytes, expected {KEY_BYTES}")
    return raw


def _check(raw: bytes, version: int) -> bytes:
    if len(raw) != KEY_BYTES:
        raise ValueError(f"a key is {KEY_BYTES} bytes, got {len(raw)}")
    if not 0 <= version <= MAX_VERSION:
        raise ValueError(f"a key version is between 0 and {MAX_VERSION}, got {version}")
    return bytes(raw)


class DataKey:
    """A customer's data key for one field class; seals that customer's fields."""

    __slots__ = ("version", "raw", "cipher")

    def __init__(self, raw: bytes, version: int) -> None:
        self.raw = _check(raw, version)
        self.version = version
        self.cipher = AESGCM(self.raw)

    def __repr__(self) -> str:
        return f"DataKey(version={self.version})"


class ScopeKey:
    """The key of one scope group and field class; wraps that group's data keys."""

    __slots__ = ("version", "raw", "cipher", "group", "field_class")

    def __init__(self, raw: bytes, version: int, group: str, field_class: str) -> None:
        self.raw = _check(raw, version)
        self.version = version
        self.group = group
        self.field_class = field_class
        self.cipher = AESGCM(self.raw)

    def __repr__(self) -> str:
        return f"ScopeKey(group={self.group!r}, field_class={self.field_class!r}, version={self.version})"
