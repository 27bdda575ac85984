"""Typed errors of the sync core.

Every error carries the fields a caller needs to act on it and a message in the
style of msgspec's: what is wrong, where (a JSON path into the batch), and how to
fix it. No error ever carries a field value: values may be personal information.
"""

from __future__ import annotations


class SyncError(Exception):
    """Base class of every error raised by `sync`."""

    #: short machine-readable code, stable across releases (problem `type` suffix)
    code = "sync_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def details(self) -> dict[str, object]:
        """Ids and paths for the caller (never values)."""
        return {}


class ClockDriftError(SyncError):
    """A change is stamped further in the future than this node accepts."""

    code = "clock_drift"

    def __init__(self, where: str, stamp_ms: int, now_ms: int, max_drift_ms: int) -> None:
        self.where = where
        self.stamp_ms = stamp_ms
        self.now_ms = now_ms
        self.max_drift_ms = max_drift_ms
        ahead = stamp_ms - now_ms
        super().__init__(
            f"Change stamped {ahead} ms in the future, more than the {max_drift_ms} ms "
            f"this node accepts - at `{where}`; check the sender's clock (NTP), "
            f"the batch is accepted once the stamp is within range"
        )

    def details(self) -> dict[str, object]:
        return {
            "where": self.where,
            "stamp_ms": self.stamp_ms,
            "now_ms": self.now_ms,
            "max_drift_ms": self.max_drift_ms,
            "retry_after_ms": max(0, self.stamp_ms - self.now_ms - self.max_drift_ms),
        }


class MalformedBatchError(SyncError):
    """A frame or batch cannot be decoded or breaks the schema."""

    code = "malformed_batch"

    def __init__(self, reason: str, where: str = "$") -> None:
        self.reason = reason
        self.where = where
        super().__init__(f"{reason} - at `{where}`" if where != "$" else reason)

    def details(self) -> dict[str, object]:
        return {"where": self.where}


class OversizedBatchError(SyncError):
    """A frame decompresses to more bytes, or holds more changes, than allowed."""

    code = "oversized_batch"

    def __init__(self, what: str, size: int, limit: int) -> None:
        self.what = what
        self.size = size
        self.limit = limit
        super().__init__(
            f"Batch {what} is {size}, over the limit of {limit}; send smaller batches"
        )

    def details(self) -> dict[str, object]:
        return {"what": self.what, "size": self.size, "limit": self.limit}


class VersionMismatchError(SyncError):
    """The peer speaks a protocol or schema version this node cannot read (or vice versa).

    ``behind`` names the side that must be upgraded: "self" when this node is older
    than the peer, "peer" when the peer is. The node that is behind waits and
    retries; nothing is merged in the meantime.
    """

    code = "version_mismatch"

    def __init__(self, what: str, ours: int, theirs: int) -> None:
        self.what = what
        self.ours = ours
        self.theirs = theirs
        self.behind = "self" if theirs > ours else "peer"
        who = "this node" if self.behind == "self" else "the peer"
        super().__init__(
            f"Peer speaks {what} version {theirs}, this node speaks {ours}: "
            f"{who} is behind and must be upgraded; nothing was merged"
        )

    def details(self) -> dict[str, object]:
        return {"what": self.what, "ours": self.ours, "theirs": self.theirs, "behind": self.behind}


class UnknownNodeError(SyncError):
    """A batch comes from, or a change originates at, a node this node does not know."""

    code = "unknown_node"

    def __init__(self, node_id: str, where: str = "$.node") -> None:
        self.node_id = node_id
        self.where = where
        super().__init__(
            f"Node `{node_id}` is not enrolled here - at `{where}`; "
            f"register it in the upstream site config before it syncs"
        )

    def details(self) -> dict[str, object]:
        return {"node_id": self.node_id, "where": self.where}


class ReplayedBatchError(SyncError):
    """A push covers only what this node already acknowledged, or leaves a gap after it.

    (``acked_since``, ``acked_through``) tell the sender where to resume: it sets
    its push cursor to them and sends again.
    """

    code = "replayed_batch"

    def __init__(
        self, node_id: str, from_seq: int, to_seq: int, acked_since: int, acked_through: int
    ) -> None:
        self.node_id = node_id
        self.from_seq = from_seq
        self.to_seq = to_seq
        self.acked_since = acked_since
        self.acked_through = acked_through
        super().__init__(
            f"Push of rows ({from_seq}, {to_seq}] from `{node_id}` does not continue what this node "
            f"acknowledged (a resend, or a gap); resume from since={acked_since}, cursor={acked_through}"
        )

    def details(self) -> dict[str, object]:
        return {
            "node_id": self.node_id,
            "from_seq": self.from_seq,
            "to_seq": self.to_seq,
            "acked_since": self.acked_since,
            "acked_through": self.acked_through,
        }


class StoreMismatchError(SyncError):
    """A peer's cursor refers to a different store (the upstream was rebuilt or restored)."""

    code = "store_mismatch"

    def __init__(self, expected: str, actual: str) -> None:
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"Cursor belongs to store `{expected}` but the peer is now store `{actual}`; "
            f"the cursor is reset and the link resynchronises from the start"
        )

    def details(self) -> dict[str, object]:
        return {"expected": self.expected, "actual": self.actual}


class LinkDownError(SyncError):
    """The transport could not reach the peer (connection refused, timeout, reset)."""

    code = "link_down"

    def __init__(self, peer: str, reason: str) -> None:
        self.peer = peer
        self.reason = reason
        super().__init__(f"Cannot reach `{peer}`: {reason}; local changes wait until the link is back")

    def details(self) -> dict[str, object]:
        return {"peer": self.peer, "reason": self.reason}


class PeerRefusedError(SyncError):
    """The peer answered a sync request with an error the transport cannot map back."""

    code = "peer_refused"

    def __init__(self, status: int, code: str, message: str) -> None:
        self.status = status
        self.peer_code = code
        super().__init__(f"Peer refused the request ({status} {code}): {message}")

    def details(self) -> dict[str, object]:
        return {"status": self.status, "code": self.peer_code}


def rebuild_error(status: int, code: str, message: str, details: dict[str, object]) -> SyncError:
    """The typed error a peer raised, from the code and details of its problem response.

    Transports use it so the replicator reacts to a remote refusal (a replayed
    push, a version mismatch, clock drift) the same way as to a local one.
    """
    d = details

    def i(key: str) -> int:
        value = d.get(key, 0)
        return value if isinstance(value, int) else 0

    def s(key: str) -> str:
        value = d.get(key, "")
        return value if isinstance(value, str) else ""

    match code:
        case "replayed_batch":
            return ReplayedBatchError(
                s("node_id"), i("from_seq"), i("to_seq"), i("acked_since"), i("acked_through")
            )
        case "version_mismatch":
            # the peer's "ours" is our "theirs"
            return VersionMismatchError(s("what"), i("theirs"), i("ours"))
        case "clock_drift":
            return ClockDriftError(s("where"), i("stamp_ms"), i("now_ms"), i("max_drift_ms"))
        case "unknown_node":
            return UnknownNodeError(s("node_id"), s("where") or "$.node")
        case "malformed_batch":
            return MalformedBatchError(message, s("where") or "$")
        case "oversized_batch":
            return OversizedBatchError(s("what"), i("size"), i("limit"))
    return PeerRefusedError(status, code, message)
