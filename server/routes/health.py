"""Liveness and node status."""

from __future__ import annotations

import msgspec
from litestar import Controller, get

from server.auth import require_admin
from server.deps import NodeDep
from server.status import NodeStatus, node_status


class Health(msgspec.Struct):
    status: str
    node_id: str


class Digest(msgspec.Struct):
    node_id: str
    digest: str
    rows: dict[str, int]


class HealthController(Controller):
    tags = ["node"]

    @get("/health", operation_id="GetHealth", name="node:health")
    async def health(self, node: NodeDep) -> Health:
        """The node is up and its store answers."""
        await node.store.high_seq()
        return Health(status="ok", node_id=node.store.node_id)

    @get("/status", operation_id="GetStatus", name="node:status", guards=[require_admin])
    async def status(self, node: NodeDep) -> NodeStatus:
        """Cursors, pending changes, last good sync per link, and the clock."""
        return await node_status(node.store, node.replicator)

    @get("/status/digest", operation_id="GetDigest", name="node:digest", guards=[require_admin])
    async def digest(self, node: NodeDep) -> Digest:
        """A hash of every replicated field state: equal on converged nodes."""
        return Digest(node_id=node.store.node_id, digest=await node.store.digest(), rows=await node.store.counts())
