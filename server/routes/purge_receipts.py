"""Purge receipts HQ holds: the nodes' signed word that they deleted what left their scope."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, get
from litestar.params import Parameter

from server.deps import NodeDep
from server.errors import problems
from server.purge_receipts import ReceiptView, receipts
from sync.ids import NODE_ID_PATTERN


class PurgeReceiptController(Controller):
    path = "/purge-receipts"
    tags = ["scope"]

    @get("/", operation_id="ListPurgeReceipts", responses=problems(400, 401), name="purge-receipts:list")
    async def list_all(self, node: NodeDep, peer: Annotated[str | None, Parameter(
            pattern=NODE_ID_PATTERN, description="only the receipts of this node")] = None,
    ) -> list[ReceiptView]:
        """Every purge receipt held here (oldest first), each checked against the
        signing key in this node's registry (``verified``)."""
        return await receipts(node.store, peer)
