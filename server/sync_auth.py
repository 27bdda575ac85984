"""Who is syncing: every sync request is signed by the node that sends it.

The replicator's transport adds one header to each ``/sync/pull`` and
``/sync/push`` request::

    x-outpost-signature: <node>.<key version>.<time ms>.<base64url Ed25519 signature>

over `signed_bytes` (the route, the node, its key version, the time and the
SHA-256 of the body). The upstream checks it against the public signing key its
registry holds for the node the message claims to come from (`check`): a
request signed by one node that claims to be another, signed with a key the
registry does not hold, or stamped outside the allowed clock drift is refused
(403). A node that has never enrolled its keys has none to check against; its
requests are taken unsigned until it enrolls (enroll before the first sync to
close that window), and after that only signed ones.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable

from crypto.errors import SignatureError
from crypto.identity import NodeIdentity, verify_signature
from sync.store.sqlite import SqliteStore

HEADER = "x-outpost-signature"
DOMAIN = b"outpost.sync-request.v1"


class SyncAuthError(Exception):
    """A sync request whose signature does not prove the node it claims to be."""

    code = "bad_signature"

    def __init__(self, node: str, reason: str) -> None:
        self.node = node
        self.reason = reason
        self.message = f"sync request claiming to be `{node}` refused: {reason}"
        super().__init__(self.message)

    def details(self) -> dict[str, object]:
        return {"node": self.node, "reason": self.reason}


def signed_bytes(route: str, node: str, key_version: int, at_ms: int, body: bytes) -> bytes:
    return b"\n".join([DOMAIN, route.encode(), node.encode(), str(key_version).encode(), str(at_ms).encode(),
                       hashlib.sha256(body).digest()])


def sign(identity: NodeIdentity, route: str, body: bytes, at_ms: int) -> str:
    """The header value for one request."""
    signature = identity.sign(signed_bytes(route, identity.node_id, identity.key_version, at_ms, body))
    encoded = base64.urlsafe_b64encode(signature).rstrip(b"=").decode()
    return f"{identity.node_id}.{identity.key_version}.{at_ms}.{encoded}"


def signer(identity_of: Callable[[], NodeIdentity], now_ms: Callable[[], int]) -> Callable[[str, bytes], dict[str, str]]:
    """The transport's hook: the header of a request on ``route`` carrying ``body``."""
    return lambda route, body: {HEADER: sign(identity_of(), route, body, now_ms())}


async def check(store: SqliteStore, header: str | None, *, route: str, claimed: str, body: bytes, now_ms: int,
                max_drift_ms: int) -> None:
    """Raise `SyncAuthError` unless ``header`` proves the request comes from ``claimed``."""
    record = await store.node(claimed)
    if record is None or record.sign_pub is None:
        return  # not enrolled yet (or not known: the responder refuses it): nothing to check against
    if header is None:
        raise SyncAuthError(claimed, f"unsigned; send the `{HEADER}` header")
    parts = header.rsplit(".", 3)  # a node id may hold dots (a phone's: `<site>.<device>`); the rest never do
    if len(parts) != 4 or not parts[1].isdigit() or not parts[2].isdigit():
        raise SyncAuthError(claimed, "malformed signature header")
    node, version, at, encoded = parts[0], int(parts[1]), int(parts[2]), parts[3]
    if node != claimed:
        raise SyncAuthError(claimed, f"signed by another node (`{node}`)")
    if version != record.key_version:
        raise SyncAuthError(claimed, f"signed with key version {version}, the registry holds {record.key_version}")
    if abs(now_ms - at) > max_drift_ms:
        raise SyncAuthError(claimed, "the signature's time is outside the allowed clock drift")
    try:
        signature = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        verify_signature(record.sign_pub, signature, signed_bytes(route, node, version, at, body), f"sync {route}")
    except (SignatureError, ValueError):
        raise SyncAuthError(claimed, "the signature does not verify with the node's registered key") from None
