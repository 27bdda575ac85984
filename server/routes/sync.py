"""Sync endpoints: msgpack frames in, msgpack frames out (see api_spec/sync-protocol.md)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import msgspec
from litestar import Controller, Request, Response, post
from litestar.openapi.spec import OpenAPIMediaType, Operation, RequestBody, Schema

from server import audit_shipping, sync_auth
from server.deps import NodeDep
from server.errors import problems
from server.node import Node
from server.sessions import NotAuthenticatedError
from server.transport import SYNC_MEDIA_TYPE
from sync.errors import OversizedBatchError
from sync.replicator import SyncReport
from sync.store.sqlite import wall_clock_ms

log = logging.getLogger(__name__)

_FRAME = OpenAPIMediaType(
    schema=Schema(type="string", format="binary", description="a sync frame: msgpack [protocol, schema, codec, body]")
)


@dataclass
class FrameOperation(Operation):
    """Documents the raw msgpack request body that Litestar cannot infer."""

    def __post_init__(self) -> None:
        self.request_body = RequestBody(content={SYNC_MEDIA_TYPE: _FRAME}, required=True)


def _authenticate(node: Node, request: Request, route: str, body: bytes) -> Callable[[str], Awaitable[None]]:  # type: ignore[type-arg]
    async def authenticate(claimed: str) -> None:
        try:
            await sync_auth.check(node.store, request.headers.get(sync_auth.HEADER), route=route, claimed=claimed,
                                  body=body, now_ms=wall_clock_ms(), max_drift_ms=node.config.sync.max_drift_ms)
        except sync_auth.SyncAuthError as exc:
            log.warning("sync.auth refused", extra={"peer": claimed, "route": route, "reason": exc.reason})
            await node.audit.refused(claimed, None, f"sync_{route}", collection="sync", status=403,
                                          reason="bad_signature")
            raise
        try:
            await node.check_peer(claimed)  # a phone: its user may still use it, and it syncs here
        except NotAuthenticatedError as exc:
            log.warning("sync.phone refused", extra={"peer": claimed, "route": route, "reason": exc.reason})
            await node.audit.refused(claimed, None, f"sync_{route}", collection="sync", status=401,
                                     reason=exc.reason)
            raise

    return authenticate


class SyncController(Controller):
    path = "/sync"
    tags = ["sync"]

    @post("/pull", operation_id="SyncPull",
          responses=problems(400, 403, 409, 413, 422), name="sync:pull", media_type=SYNC_MEDIA_TYPE, status_code=200,
          operation_class=FrameOperation)
    async def pull(self, request: Request, node: NodeDep) -> Response[bytes]:
        """A downstream node asks for the changes after its cursor; answers one bounded page.
        Signed by the node (`server.sync_auth`)."""
        body = await request.body()
        await node.refresh_scopes()
        frame = await node.responder.handle("pull", body, _authenticate(node, request, "pull", body))
        return Response(frame, media_type=SYNC_MEDIA_TYPE)

    @post("/push", operation_id="SyncPush",
          responses=problems(400, 403, 409, 413, 422), name="sync:push", media_type=SYNC_MEDIA_TYPE, status_code=200,
          operation_class=FrameOperation)
    async def push(self, request: Request, node: NodeDep) -> Response[bytes]:
        """A downstream node sends its changes; all are merged in one transaction and acknowledged.
        Signed by the node (`server.sync_auth`)."""
        body = await request.body()
        await node.refresh_scopes()
        frame = await node.responder.handle("push", body, _authenticate(node, request, "push", body))
        node.steward.trigger()  # keys for new customers, shredding after deletions
        return Response(frame, media_type=SYNC_MEDIA_TYPE)


    @post("/audit", operation_id="SyncAudit",
          responses=problems(400, 403, 409, 413, 422), name="sync:audit", media_type=SYNC_MEDIA_TYPE, status_code=200,
          operation_class=FrameOperation)
    async def audit(self, request: Request, node: NodeDep) -> Response[bytes]:
        """A downstream node sends the audit entries and checkpoints it has not
        sent yet (msgpack `AuditBatch`): kept append-only, the new part of each
        chain checked, a break raised as an alert. Signed by the node."""
        body = await request.body()
        if len(body) > node.config.sync.max_body_bytes:
            raise OversizedBatchError("audit batch", len(body), node.config.sync.max_body_bytes)
        batch = audit_shipping.decode_batch(body)
        await _authenticate(node, request, "audit", body)(batch.node)
        ack = await audit_shipping.receive(node.store, batch, now_ms=wall_clock_ms())
        return Response(msgspec.msgpack.encode(ack), media_type=SYNC_MEDIA_TYPE)


class SyncNowController(Controller):
    path = "/sync/now"
    tags = ["sync"]

    @post("/", operation_id="SyncNow", responses=problems(401, 409, 502, 503), name="sync:now", status_code=200)
    async def sync_now(self, node: NodeDep) -> SyncReport:
        """Sync with the upstream now (push, then pull until caught up), then do the
        key work that calls for; returns what moved."""
        return await node.sync_now()

