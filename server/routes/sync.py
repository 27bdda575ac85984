"""Sync endpoints: msgpack frames in, msgpack frames out (see api_spec/sync-protocol.md)."""

from __future__ import annotations

from dataclasses import dataclass

from litestar import Controller, Request, Response, post
from litestar.openapi.spec import OpenAPIMediaType, Operation, RequestBody, Schema

from server.deps import NodeDep
from server.transport import SYNC_MEDIA_TYPE
from sync.replicator import SyncReport

_FRAME = OpenAPIMediaType(
    schema=Schema(type="string", format="binary", description="a sync frame: msgpack [protocol, schema, codec, body]")
)


@dataclass
class FrameOperation(Operation):
    """Documents the raw msgpack request body that Litestar cannot infer."""

    def __post_init__(self) -> None:
        self.request_body = RequestBody(content={SYNC_MEDIA_TYPE: _FRAME}, required=True)


class SyncController(Controller):
    path = "/sync"
    tags = ["sync"]

    @post("/pull", operation_id="SyncPull", name="sync:pull", media_type=SYNC_MEDIA_TYPE, status_code=200,
          operation_class=FrameOperation)
    async def pull(self, request: Request, node: NodeDep) -> Response[bytes]:
        """A downstream node asks for the changes after its cursor; answers one bounded page."""
        frame = await node.responder.handle("pull", await request.body())
        return Response(frame, media_type=SYNC_MEDIA_TYPE)

    @post("/push", operation_id="SyncPush", name="sync:push", media_type=SYNC_MEDIA_TYPE, status_code=200,
          operation_class=FrameOperation)
    async def push(self, request: Request, node: NodeDep) -> Response[bytes]:
        """A downstream node sends its changes; all are merged in one transaction and acknowledged."""
        frame = await node.responder.handle("push", await request.body())
        node.steward.trigger()  # keys for new customers, shredding after deletions
        return Response(frame, media_type=SYNC_MEDIA_TYPE)


class SyncNowController(Controller):
    path = "/sync/now"
    tags = ["sync"]

    @post("/", operation_id="SyncNow", name="sync:now", status_code=200)
    async def sync_now(self, node: NodeDep) -> SyncReport:
        """Sync with the upstream now (push, then pull until caught up), then do the
        key work that calls for; returns what moved."""
        return await node.sync_now()

