"""Typed errors of the crypto core.

They follow Fernet and ``InvalidTag``: a failure says what could not be opened,
unwrapped or verified, and a short reason code for the log. No message ever holds
a plaintext, a key or a passphrase, so tracebacks are safe to log.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

OpenReason = Literal["tag", "format", "wrong_version", "no_key"]
UnwrapReason = Literal["tag", "format", "wrong_recipient", "no_key"]


class CryptoError(Exception):
    """Base class of every error raised by `crypto`."""

    #: short machine-readable code, stable across releases
    code = "crypto_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def details(self) -> dict[str, object]:
        """Ids and reason codes for the caller (never values)."""
        return {}


class OpenError(CryptoError):
    """A sealed field cannot be opened; the API shows it as ``unavailable``.

    ``reason``: ``tag`` (altered, moved to another field or row, or the wrong key),
    ``format`` (not a sealed value of a known format), ``wrong_version`` (sealed
    under another key version than the one given), ``no_key`` (for callers that
    hold no key of that version).
    """

    code = "open_failed"

    def __init__(self, collection: str, row_id: str, field: str, reason: OpenReason) -> None:
        self.collection = collection
        self.row_id = row_id
        self.field = field
        self.reason = reason
        super().__init__(f"cannot open {collection}.{field} of row {row_id}: {reason}")

    def details(self) -> dict[str, object]:
        return {"collection": self.collection, "row_id": self.row_id, "field": self.field, "reason": self.reason}


class UnwrapError(CryptoError):
    """A wrapped key cannot be unwrapped.

    ``what`` names the key (``scope key branch-a/contact v2 for node hq``);
    ``reason`` is ``tag``, ``format``, ``wrong_recipient`` or ``no_key``.
    """

    code = "unwrap_failed"

    def __init__(self, what: str, reason: UnwrapReason) -> None:
        self.what = what
        self.reason = reason
        super().__init__(f"cannot unwrap {what}: {reason}")

    def details(self) -> dict[str, object]:
        return {"what": self.what, "reason": self.reason}


class SignatureError(CryptoError):
    """A signature does not verify against the signer's public key."""

    code = "bad_signature"

    def __init__(self, what: str) -> None:
        self.what = what
        super().__init__(f"signature on {what} does not verify")

    def details(self) -> dict[str, object]:
        return {"what": self.what}


class KeystoreError(CryptoError):
    """The keystore file cannot be created, read or opened."""

    code = "keystore_error"

    def __init__(self, path: str | os.PathLike[str], message: str) -> None:
        self.path = Path(path)
        super().__init__(message)

    def details(self) -> dict[str, object]:
        return {"path": str(self.path)}


class KeystoreMissingError(KeystoreError):
    code = "keystore_missing"

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__(path, f"no keystore at {path}; create one first (outpost init)")


class KeystoreExistsError(KeystoreError):
    code = "keystore_exists"

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__(path, f"a keystore already exists at {path}; open it instead, or move it away first")


class KeystorePassphraseError(KeystoreError):
    """The passphrase does not open the file (AES-GCM cannot tell this from tampering)."""

    code = "keystore_passphrase"

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__(path, f"wrong passphrase for keystore {path} (or the file was altered)")


class KeystoreFormatError(KeystoreError):
    """The file is not a keystore this version can read: bad magic, truncated, undecodable."""

    code = "keystore_format"

    def __init__(self, path: str | os.PathLike[str], detail: str) -> None:
        self.detail = detail
        super().__init__(path, f"keystore {path} is not readable: {detail}")

    def details(self) -> dict[str, object]:
        return {"path": str(self.path), "detail": self.detail}


class NormalizeError(CryptoError):
    """A phone or ID number cannot be normalised for the blind index.

    ``detail`` says what was expected, never what was given.
    """

    code = "normalize_failed"

    def __init__(self, kind: str, detail: str) -> None:
        self.kind = kind
        self.detail = detail
        super().__init__(f"cannot normalise {kind}: {detail}")

    def details(self) -> dict[str, object]:
        return {"kind": self.kind, "detail": self.detail}
