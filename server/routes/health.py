"""Liveness and node status."""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import Controller, get
from litestar.params import Parameter

from server.auth import require_admin
from server.deps import NodeDep
from server.errors import NotFoundError, problems
from server.peer_scopes import scope_for
from sync.ids import NODE_ID_PATTERN
from sync.schema import COLLECTIONS
from server.status import NodeStatus, node_status


#: collections each node holds its own part of (digested apart from the work data)
SCOPED = ("keys", "users", "purge_receipts")


class Health(msgspec.Struct):
    status: str
    node_id: str


class Digest(msgspec.Struct):
    node_id: str
    #: the work data (every collection but keys, users and purge receipts): equal on
    #: converged nodes; at HQ with ``peer``, the rows and fields that peer's scope admits
    digest: str
    #: the key records: this node's, or at HQ with ``peer``, those that peer's scope admits
    keys_digest: str
    rows: dict[str, int]
    #: the users: this node's, or at HQ with ``peer``, those of that peer's site
    users_digest: str = ""


class HealthController(Controller):
    tags = ["node"]

    @get("/health", operation_id="GetHealth", name="node:health")
    async def health(self, node: NodeDep) -> Health:
        """The node is up and its store answers."""
        await node.store.high_seq()
        return Health(status="ok", node_id=node.store.node_id)

    @get("/status", operation_id="GetStatus", responses=problems(401), name="node:status", guards=[require_admin])
    async def status(self, node: NodeDep) -> NodeStatus:
        """Cursors, pending changes, last good sync per link, and the clock."""
        return await node_status(node.store, node.replicator)

    @get("/status/digest", operation_id="GetDigest",
         responses=problems(400, 401, 404), name="node:digest", guards=[require_admin])
    async def digest(self, node: NodeDep, peer: Annotated[str | None, Parameter(
            pattern=NODE_ID_PATTERN, description="at HQ: digest the key records as this peer should hold them")] = None,
    ) -> Digest:
        """Hashes of every replicated field state: equal on converged nodes. Key
        records and users are scoped (each node holds its own), so each has its
        own digest."""
        store = node.store
        work = [c for c in COLLECTIONS if c not in SCOPED]
        scope = None if peer is None else scope_for(node.config, node.policy, peer)
        if peer is not None and scope is None:
            raise NotFoundError("nodes", peer)
        return Digest(
            node_id=store.node_id,
            digest=await store.digest(work, scope=scope),
            keys_digest=await store.digest(["keys"], admit=None if scope is None else scope.admits),
            rows=await store.counts(),
            users_digest=await store.digest(["users"], admit=None if scope is None else scope.admits),
        )
