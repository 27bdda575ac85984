"""The upstream side of a link: answers downstream nodes' pulls and pushes.

`Responder.handle` takes a request frame and returns a response frame. It speaks
bytes, not HTTP: `server/` mounts it on routes, tests call it in memory. Every
refusal is a typed `SyncError` raised before anything is stored.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Literal

from sync.changes import Ack, ChangesPage, PullRequest, PushBatch, decode_frame, encode_frame
from sync.errors import MalformedBatchError
from sync.protocol import acked_after, check_push, origin_checker, pull_start, require_known, validate_changes
from sync.scope import PeerScope
from sync.store import ReplicaStore

log = logging.getLogger(__name__)

Route = Literal["pull", "push"]


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


class Responder:
    """Serves the nodes below this one (branches below HQ, phones below a branch)."""

    def __init__(
        self,
        store: ReplicaStore,
        limits: Limits | None = None,
        *,
        compress: bool = True,
        scope_for: Callable[[str], PeerScope | None] = lambda peer: None,
    ) -> None:
        self.store = store
        self.limits = limits or Limits()
        self.compress = compress
        #: the scope of a downstream node (None: it receives everything)
        self.scope_for = scope_for
        #: changes served per peer in the pull run under way
        self._sent: dict[str, int] = {}

    async def handle(self, route: Route, body: bytes) -> bytes:
        message, peer_schema = decode_frame(body, max_body_bytes=self.limits.max_body_bytes)
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
        require_known(request.node, await store.node(request.node) is not None and request.node != store.node_id)
        high = await store.high_seq()
        since, cursor = pull_start(request, peer_schema, store_id=store.store_id, high=high)
        link = await store.ensure_link(request.node, "downstream")
        if request.node_store_id is not None and link.peer_store_id != request.node_store_id:
            # first contact, or the downstream was rebuilt: its numbering starts again
            await store.reset_peer(request.node, request.node_store_id)
        limit = min(request.limit, self.limits.max_page_changes)
        scope = self.scope_for(request.node)
        page = await store.changes_after(
            since, cursor, limit=limit, exclude_src=request.node, admit=None if scope is None else scope.admits
        )
        # one write per completed run, not per page: serving stays a read
        sent = self._sent.pop(request.node, 0) + len(page.changes)
        if page.more:
            self._sent[request.node] = sent
        else:
            await store.record_served(request.node, cursor=page.cursor, sent=sent)
        log.info(
            "sync.pull served",
            extra={"peer": request.node, "since": since, "from": cursor, "to": page.cursor, "changes": len(page.changes)},
        )
        return ChangesPage(
            node=store.node_id,
            store_id=store.store_id,
            changes=page.changes,
            since=since,
            cursor=page.cursor,
            high=page.high,
            more=page.more,
            now_ms=store.clock.now_ms(),
        )

    async def push(self, batch: PushBatch) -> Ack:
        store = self.store
        require_known(batch.node, await store.node(batch.node) is not None and batch.node != store.node_id)
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
        incoming = validate_changes(
            batch.changes,
            clock=store.clock,
            origin_allowed=origin_checker(batch.node, await store.descendants(batch.node)),
        )
        acked_since, acked_through = acked_after(batch, acked_since=acked[0])
        report = await store.apply_pushed(
            incoming,
            peer=batch.node,
            peer_store_id=batch.store_id,
            acked_since=acked_since,
            acked_through=acked_through,
            new_store=new_store,
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


def _kind(message: object) -> str:
    return type(message).__struct_config__.tag  # type: ignore[attr-defined,no-any-return]
