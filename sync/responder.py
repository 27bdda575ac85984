"""The upstream side of a link: answers downstream nodes' pulls and pushes.

`Responder.handle` takes a request frame and returns a response frame. It speaks
bytes, not HTTP: `server/` mounts it on routes, tests call it in memory. Every
refusal is a typed `SyncError` raised before anything is stored.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Literal, NamedTuple

from sync.audit import AuditDraft
from sync.changes import Ack, ChangesPage, PullRequest, PushBatch, RowDrop, decode_frame, encode_frame
from sync.errors import MalformedBatchError
from sync.protocol import (
    acked_after,
    check_push,
    origin_checker,
    pull_start,
    put_ahead,
    require_known,
    validate_changes,
)
from sync.scope import PeerScope
from sync.store import ApplyReport, ReplicaStore

log = logging.getLogger(__name__)

Route = Literal["pull", "push"]
#: a reshaping run for a peer that synced before scopes were recorded
LEGACY = "legacy"


class Limits:
    """Bounds on what one request may carry."""

    def __init__(
        self,
        *,
        max_body_bytes: int = 64 * 1024 * 1024,
        max_push_changes: int = 20_000,
        max_page_changes: int = 20_000,
    ) -> None:
        self.max_body_bytes = max_body_bytes
        self.max_push_changes = max_push_changes
        self.max_page_changes = max_page_changes


#: a push's refused rows named in its session record, at most
_REFUSED_ROWS_NAMED = 100


class ServedSession(NamedTuple):
    """A pull run served or a push taken, for the audit log: counts and the rows
    whose changes were refused, never values."""

    route: str
    peer: str
    counts: dict[str, int]
    refused_rows: list[str] = []


class Responder:
    """Serves the nodes below this one (branches below HQ, phones below a branch)."""

    def __init__(
        self,
        store: ReplicaStore,
        limits: Limits | None = None,
        *,
        compress: bool = True,
        scope_for: Callable[[str], PeerScope | None] = lambda peer: None,
        on_session: Callable[[ServedSession], AuditDraft] | None = None,
    ) -> None:
        self.store = store
        #: the audit entry of each pull run completed with changes, and of each push,
        #: committed with what it records (the run's end, the push's merge)
        self.on_session = on_session
        self.limits = limits or Limits()
        self.compress = compress
        #: the scope of a downstream node (None: it receives everything)
        self.scope_for = scope_for
        #: changes served per peer in the pull run under way
        self._sent: dict[str, int] = {}
        #: scoped peers: pages served and not yet confirmed by the peer's next pull
        self._pages: dict[str, list[_Served]] = {}
        self._serial = 0
        #: scoped peers in a run that re-sends their rows whole (their scope changed), by fingerprint
        self._reshaping: dict[str, str] = {}

    async def handle(self, route: Route, body: bytes,
                     authenticate: Callable[[str], Awaitable[None]] | None = None) -> bytes:
        """Answer one request frame. ``authenticate`` is given the node the message
        claims to come from, before anything is read or stored, and raises to refuse it."""
        message, peer_schema = decode_frame(body, max_body_bytes=self.limits.max_body_bytes)
        if authenticate is not None and isinstance(message, PullRequest | PushBatch):
            await authenticate(message.node)
        if route == "pull":
            if not isinstance(message, PullRequest):
                raise MalformedBatchError(f"Expected a `pull` message on the pull route, got `{_kind(message)}`", "$.kind")
            page = await self.pull(message, peer_schema)
            return encode_frame(page, compress=self.compress)
        if not isinstance(message, PushBatch):
            raise MalformedBatchError(f"Expected a `push` message on the push route, got `{_kind(message)}`", "$.kind")
        ack = await self.push(message)
        return encode_frame(ack, compress=self.compress)

    async def pull(self, request: PullRequest, peer_schema: int) -> ChangesPage:
        store = self.store
        require_known(request.node, await self._known(request.node))
        high = await store.high_seq()
        since, cursor = pull_start(request, peer_schema, store_id=store.store_id, high=high)
        link = await store.ensure_link(request.node, "downstream")
        scope = self.scope_for(request.node)
        scoped = scope is not None and scope.rows is not None
        if request.node_store_id is not None and link.peer_store_id != request.node_store_id:
            # first contact, or the downstream was rebuilt: its numbering starts again
            await store.reset_peer(request.node, request.node_store_id)
            self._pages.pop(request.node, None)
        elif scoped:
            await self._confirm(request.node, request.scope)
        reshape = assume_held = False
        if scoped and scope is not None:
            since, cursor, reshape, assume_held = self._run_mode(request, scope, since, cursor)
        limit = min(request.limit, self.limits.max_page_changes)
        owed = await store.owed_drops(request.node, limit=limit) if scoped else []
        admit = None if scope is None else scope.admits
        ahead = None
        if request.priority:
            ahead = await store.priority_after(
                since, cursor, limit=max(1, limit - len(owed)), exclude_src=request.node, admit=admit,
                scope=scope if scoped else None,
            )
        page = await store.changes_after(
            since, cursor, limit=max(1, limit - len(owed) - (len(ahead.changes) if ahead else 0)),
            exclude_src=request.node, admit=admit, scope=scope if scoped else None, reshape=reshape,
            assume_held=assume_held,
        )
        changes, entered = page.changes, page.entered
        if ahead is not None and ahead.changes:
            dropped = {(d.collection, d.row_id) for d in (*owed, *page.drops)}
            changes = put_ahead(ahead.changes, page.changes, dropped=dropped)
            entered = [*page.entered, *(key for key in ahead.entered if key not in dropped)]
        if not page.more:
            self._reshaping.pop(request.node, None)
        token = ""
        if scoped and scope is not None:
            self._serial += 1
            token = f"{scope.fingerprint}.{self._serial}"
            self._pages.setdefault(request.node, []).append(
                _Served(token, entered, page.left, [*owed, *page.drops])
            )
        # one write per completed run, not per page: serving stays a read
        sent = self._sent.pop(request.node, 0) + len(changes)
        if page.more:
            self._sent[request.node] = sent
        else:
            audit = None
            if self.on_session is not None and sent:
                audit = self.on_session(ServedSession("pull", request.node, {"changes": sent}))
            await store.record_served(request.node, cursor=page.cursor, sent=sent, audit=audit)
        log.info(
            "sync.pull served",
            extra={"peer": request.node, "since": since, "from": cursor, "to": page.cursor, "changes": len(changes),
                   "ahead": len(ahead.changes) if ahead else 0, "drops": len(owed) + len(page.drops)},
        )
        return ChangesPage(
            node=store.node_id,
            store_id=store.store_id,
            changes=changes,
            since=since,
            cursor=page.cursor,
            high=page.high,
            more=page.more,
            now_ms=store.clock.now_ms(),
            drops=[*owed, *page.drops],
            scope=token,
        )

    def _run_mode(self, request: PullRequest, scope: PeerScope, since: int, cursor: int) -> tuple[int, int, bool, bool]:
        """(since, cursor, reshape, assume_held) for a scoped peer's pull.

        When its scope changed since its last page (a policy reload, a new
        contract), its run starts again at 0 and *reshapes*: rows that entered the
        scope without changing arrive, and those it holds are reset there and sent
        whole, so a field no longer present goes. A peer that pulled before this
        upstream recorded scopes (no token, a cursor) may hold any row: its run
        starts again and every row outside its scope is purged there. Either mode
        lasts to the end of the run."""
        node = request.node
        if not request.scope and (since or cursor):
            self._reshaping[node] = LEGACY
            return 0, 0, True, True
        if request.scope and _fingerprint(request.scope) != scope.fingerprint:
            self._reshaping[node] = scope.fingerprint
            return 0, 0, True, False
        mode = self._reshaping.get(node)
        if mode not in (scope.fingerprint, LEGACY):
            self._reshaping.pop(node, None)
            return since, cursor, False, False
        return since, cursor, True, mode == LEGACY

    async def _known(self, node: str) -> bool:
        """A node of the registry, not this one, and not retired."""
        record = await self.store.node(node)
        return record is not None and record.retired_ms is None and node != self.store.node_id

    async def _confirm(self, peer: str, token: str) -> None:
        """The peer stored the page it names (and so every page before it): record
        the rows those pages sent it whole or purged. Pages after it were lost."""
        served = self._pages.pop(peer, [])
        done = next((i for i, page in enumerate(served) if page.token == token), None)
        if done is None or not token:
            return
        pages = served[: done + 1]
        if not any(page.entered or page.left or page.drops for page in pages):
            return
        await self.store.confirm_served(
            peer,
            entered=[key for page in pages for key in page.entered],
            left=[key for page in pages for key in page.left],
            dropped=[drop for page in pages for drop in page.drops],
        )

    async def push(self, batch: PushBatch) -> Ack:
        store = self.store
        require_known(batch.node, await self._known(batch.node))
        link = await store.ensure_link(batch.node, "downstream")
        # a store this link has not seen (first contact, or rebuilt) starts from 0;
        # the link is reset only when the batch is stored, never by a refused one
        new_store = link.peer_store_id != batch.store_id
        acked = (0, 0) if new_store else (link.acked_since, link.acked_through)
        check_push(
            batch,
            acked_since=acked[0],
            acked_through=acked[1],
            max_changes=self.limits.max_push_changes,
        )
        scope = self.scope_for(batch.node)
        incoming = validate_changes(
            batch.changes,
            clock=store.clock,
            origin_allowed=origin_checker(batch.node, await store.descendants(batch.node)),
        )
        acked_since, acked_through = acked_after(batch, acked_since=acked[0])
        on_session = self.on_session

        def audit(report: ApplyReport) -> AuditDraft | None:
            if on_session is None or not batch.changes:
                return None
            refused_rows = sorted({batch.changes[r.index].row_id for r in report.refused})
            return on_session(ServedSession(
                "push", batch.node, {"changes": len(batch.changes), "applied": report.applied,
                                     "superseded": report.superseded, "refused": len(report.refused),
                                     "conflicts": report.conflicts}, refused_rows[:_REFUSED_ROWS_NAMED]))

        report = await store.apply_pushed(
            incoming,
            peer=batch.node,
            peer_store_id=batch.store_id,
            acked_since=acked_since,
            acked_through=acked_through,
            new_store=new_store,
            scope=scope if scope is not None and scope.rows is not None else None,
            audit=audit,
        )
        log.info(
            "sync.push applied",
            extra={
                "peer": batch.node,
                "from": batch.from_seq,
                "to": batch.to_seq,
                "applied": report.applied,
                "superseded": report.superseded,
                "refused": len(report.refused),
                "conflicts": report.conflicts,
            },
        )
        if report.refused and batch.node in self._pages:
            # a row the peer owes a drop for is no longer held, whatever a page not yet confirmed said
            owed = {(batch.changes[r.index].collection, batch.changes[r.index].row_id) for r in report.refused}
            for page in self._pages[batch.node]:
                page.entered[:] = [key for key in page.entered if key not in owed]
        for refusal in report.refused:
            change = batch.changes[refusal.index]
            log.warning(
                "sync.push change refused",
                extra={
                    "peer": batch.node,
                    "collection": change.collection,
                    "row_id": change.row_id,
                    "field": change.field,
                    "reason": refusal.reason,
                },
            )
        return Ack(
            node=store.node_id,
            store_id=store.store_id,
            acked_since=acked_since,
            acked_through=acked_through,
            applied=report.applied,
            superseded=report.superseded,
            refused=report.refused,
            now_ms=store.clock.now_ms(),
            conflicts=report.conflicts,
        )


class _Served(NamedTuple):
    """A page served to a scoped peer: what it changes in the peer's copy."""

    token: str
    entered: list[tuple[str, str]]
    left: list[tuple[str, str]]
    drops: list[RowDrop]


def _fingerprint(token: str) -> str:
    return token.partition(".")[0]


def _kind(message: object) -> str:
    return type(message).__struct_config__.tag  # type: ignore[attr-defined,no-any-return]
