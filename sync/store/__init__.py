"""Replica storage: the only code that speaks SQL.

`ReplicaStore` is what the protocol, the replicator and the server need from a
store. `SqliteStore` implements it on one SQLite file in WAL mode; a PostgreSQL
store for HQ can implement the same protocol.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

import msgspec

from sync.audit import AuditDraft
from sync.changes import Change, RefusedChange, RowDrop
from sync.edits import Edit
from sync.hlc import Clock
from sync.protocol import Incoming
from sync.scope import PeerScope, RowFilter

if TYPE_CHECKING:
    from sync.store.snapshot import Snapshot

_T = TypeVar("_T")


#: (purged rows as ``collection/row_id``, key records purged with them) -> the
#: edits that record the purge (a signed receipt), stored in its transaction
PurgeHook = Callable[[list[str], int], list[Edit]]


class ApplyReport(msgspec.Struct, frozen=True):
    """What one batch did: counts, refused changes, and the local sequence after it.

    ``conflicts`` counts fields where the batch met a different value written
    concurrently here (one the sender had not seen), whichever side won.
    """

    applied: int
    superseded: int
    refused: list[RefusedChange]
    seq: int
    conflicts: int = 0
    #: rows purged at an upstream's word (they left this node's scope)
    purged: int = 0


class Page(msgspec.Struct, frozen=True):
    """Stored changes after a cursor; ``cursor`` is where the next page starts.

    When ``more`` is false the run is complete: ``cursor`` (= ``high``) becomes
    the next run's ``since``.
    """

    changes: list[Change]
    cursor: int
    high: int
    more: bool
    #: scoped peers: rows to drop at the peer, and the governed rows the page
    #: sends whole (entering its copy) or purges (leaving it)
    drops: list[RowDrop] = []
    entered: list[tuple[str, str]] = []
    left: list[tuple[str, str]] = []


class LinkState(msgspec.Struct, kw_only=True):
    """One link to a peer, as this node sees it."""

    peer: str
    direction: str
    peer_store_id: str | None = None
    pull_since: int = 0
    pull_cursor: int = 0
    push_since: int = 0
    push_cursor: int = 0
    acked_since: int = 0
    acked_through: int = 0
    served_cursor: int = 0
    last_ok_ms: int | None = None
    last_error: str | None = None
    last_error_ms: int | None = None
    changes_in: int = 0
    changes_out: int = 0
    #: the scope fingerprint of the last page pulled from this (upstream) peer
    pull_scope: str = ""


class NodeRecord(msgspec.Struct, frozen=True):
    """A node in the registry; its public keys once it has enrolled them."""

    node_id: str
    parent: str | None
    role: str
    enrolled_ms: int
    key_version: int | None = None
    sign_pub: bytes | None = None
    kem_pub: bytes | None = None
    #: offboarding began (its scope is empty: it purges everything it holds)
    offboarding_ms: int | None = None
    #: its credentials were retired: it may no longer sync here
    retired_ms: int | None = None


class SessionRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One sign-in at this node (or one device's exchange of its credential): a
    family of refresh tokens. Local to the node, never replicated.

    ``rev``: the user's ``tokens_valid_after_ms`` when the session began; a
    later revocation of the user ends it.
    """

    session_id: str
    user_id: str
    device_id: str | None = None
    rev: int
    created_ms: int
    expires_ms: int
    revoked_ms: int | None = None
    revoked_why: str | None = None


class DeviceRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A phone enrolled by a signed-in user; ``secret_hash`` is SHA-256 of its credential."""

    device_id: str
    user_id: str
    secret_hash: bytes
    label: str | None = None
    rev: int
    enrolled_ms: int
    revoked_ms: int | None = None

    def __repr__(self) -> str:
        return f"DeviceRecord(device_id={self.device_id!r}, user_id={self.user_id!r}, revoked_ms={self.revoked_ms})"


#: what presenting a refresh token did: rotated (a new one is stored), or why not
RefreshUse = Literal["rotated", "unknown", "reused", "revoked", "expired"]


class SessionStore(Protocol):
    """The node-local sign-in state (server/sessions.py)."""

    async def create_session(self, session: SessionRecord, token_hash: bytes) -> None: ...

    async def session(self, session_id: str) -> SessionRecord | None: ...

    async def use_refresh_token(
        self, token_hash: bytes, new_hash: bytes, *, now_ms: int
    ) -> tuple[RefreshUse, SessionRecord | None]: ...

    async def revoke_session(self, session_id: str, *, now_ms: int, why: str) -> bool: ...

    async def add_device(self, device: DeviceRecord) -> None: ...

    async def device(self, device_id: str) -> DeviceRecord | None: ...

    async def purge_sessions(self, *, before_ms: int) -> int: ...


class ReplicaStore(Protocol):
    node_id: str
    store_id: str
    clock: Clock
    #: secret values replaced or shredded since the store opened (see `SqliteStore`)
    retired_secrets: int

    async def close(self) -> None: ...

    async def write_local(self, edits: list[Edit]) -> list[Change]: ...

    async def apply_pulled(
        self, incoming: list[Incoming], *, peer: str, peer_store_id: str, since: int, cursor: int,
        drops: list[RowDrop] | None = None, scope: str = "", on_purge: PurgeHook | None = None,
    ) -> ApplyReport: ...

    async def apply_pushed(
        self,
        incoming: list[Incoming],
        *,
        peer: str,
        peer_store_id: str,
        acked_since: int,
        acked_through: int,
        new_store: bool = False,
        scope: PeerScope | None = None,
        audit: Callable[[ApplyReport], AuditDraft | None] | None = None,
    ) -> ApplyReport: ...

    async def changes_after(
        self, since: int, cursor: int, *, limit: int, exclude_src: str, admit: RowFilter | None = None,
        scope: PeerScope | None = None, reshape: bool = False, assume_held: bool = False,
    ) -> Page: ...

    async def priority_after(
        self, since: int, cursor: int, *, limit: int, exclude_src: str, admit: RowFilter | None = None,
        scope: PeerScope | None = None,
    ) -> Page: ...

    async def owed_drops(self, peer: str, *, limit: int) -> list[RowDrop]: ...

    async def confirm_served(
        self, peer: str, *, entered: Iterable[tuple[str, str]], left: Iterable[tuple[str, str]],
        dropped: Iterable[RowDrop] = (),
    ) -> None: ...

    async def high_seq(self) -> int: ...

    async def link(self, peer: str) -> LinkState | None: ...

    async def ensure_link(self, peer: str, direction: str) -> LinkState: ...

    async def record_push_ack(self, peer: str, *, since: int, cursor: int, sent: int) -> None: ...

    async def set_push_cursor(self, peer: str, *, since: int, cursor: int) -> None: ...

    async def record_served(self, peer: str, *, cursor: int, sent: int, audit: AuditDraft | None = None) -> None: ...

    async def raise_seq(self, seq: int) -> None: ...

    async def reset_peer(self, peer: str, peer_store_id: str) -> None: ...

    async def record_link_error(self, peer: str, error: str) -> None: ...

    async def pending_count(self, since: int, cursor: int, *, exclude_src: str) -> int: ...

    async def links(self) -> list[LinkState]: ...

    async def node(self, node_id: str) -> NodeRecord | None: ...

    async def descendants(self, node_id: str) -> set[str]: ...

    async def enroll(self, node_id: str, *, parent: str | None, role: str) -> None: ...

    async def read_row(self, collection: str, row_id: str) -> dict[str, Any] | None: ...

    async def field_origins(self, collection: str, row_id: str) -> dict[str, str]: ...

    async def find_rows(
        self, collection: str, *, limit: int = 10_000, after: str = "", fields: tuple[str, ...] | None = None,
        at_least: dict[str, int] | None = None, **equals: Any
    ) -> list[dict[str, Any]]: ...

    async def work_queue(
        self, *, limit: int, after: tuple[int, int, str] | None = None, due_before: int | None = None,
        priority_min: int | None = None, **equals: Any,
    ) -> list[dict[str, Any]]: ...

    async def snapshot(self, fn: Callable[[Snapshot], _T]) -> _T: ...

    async def rows_after(
        self, collection: str, after_seq: int, *, limit: int = 1_000, any_of: tuple[str, ...] = (), **equals: Any
    ) -> list[tuple[int, dict[str, Any]]]: ...

    async def index_live_rows(self, collection: str, column: str) -> str: ...

    async def live_rows_before(
        self, collection: str, column: str, before_ms: int, *, limit: int = 1_000
    ) -> list[str]: ...

    async def live_rows_between(self, collection: str, column: str, since: int, until: int, *,
                                after: tuple[int, str] | None = None, limit: int = 1_000,
                                fields: tuple[str, ...] | None = None) -> list[dict[str, Any]]: ...

    async def live_row_stamps(
        self, collection: str, field: str | None = None, *, after: str = "", limit: int = 1_000, **equals: Any
    ) -> list[tuple[str, int]]: ...

    async def column_values(
        self, collection: str, column: str, *, after: str = "", limit: int = 1000
    ) -> list[tuple[str, Any]]: ...

    async def defer_indexes(self) -> list[str]: ...

    async def restore_indexes(self) -> None: ...

    async def checkpoint(self) -> None: ...

    async def nodes(self) -> list[NodeRecord]: ...

    async def set_node_keys(self, node_id: str, *, key_version: int, sign_pub: bytes, kem_pub: bytes) -> None: ...

    async def digest(self, collections: list[str] | None = None, *, admit: RowFilter | None = None,
                     scope: PeerScope | None = None) -> str: ...

    async def counts(self) -> dict[str, int]: ...
