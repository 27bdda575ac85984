"""Partner offboarding at HQ: begin, follow, retire (see server/offboarding.py)."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, get, post
from litestar.params import Parameter

from server import offboarding
from server.audit_log import OPERATOR
from server.deps import NodeDep
from server.errors import WrongNodeError, problems
from server.node import Node
from server.offboarding import Offboarding
from sync.ids import NODE_ID_PATTERN

NodeIdParam = Annotated[str, Parameter(pattern=NODE_ID_PATTERN, description="the partner's node id")]


def _at_hq(node: Node) -> None:
    if node.authority is None:
        raise WrongNodeError("offboard", node.config.node_id, node.hq)


class OffboardingController(Controller):
    path = "/partners/{partner:str}"
    tags = ["scope"]

    @post("/offboard", operation_id="OffboardPartner",
          responses=problems(400, 401, 404, 409), name="partners:offboard", status_code=200)
    async def begin(self, partner: NodeIdParam, node: NodeDep) -> Offboarding:
        """Revoke the partner's campaigns, customers, users and keys; its next sync
        purges everything it holds and signs a receipt."""
        _at_hq(node)
        report = await offboarding.begin(node.store, node.config, partner, audit=node.audit.draft(
            OPERATOR, "offboard", collection="nodes", peer=partner, reason="begin"))
        node.offboarding.add(partner)
        return report

    @get("/offboard", operation_id="GetOffboarding",
         responses=problems(400, 401, 404, 409), name="partners:offboarding")
    async def progress(self, partner: NodeIdParam, node: NodeDep) -> Offboarding:
        """Whether the partner's node has purged what it held (and signed for it)."""
        _at_hq(node)
        return await offboarding.progress(node.store, node.config, partner)

    @post("/retire", operation_id="RetirePartner",
          responses=problems(400, 401, 404, 409), name="partners:retire", status_code=200)
    async def retire(self, partner: NodeIdParam, node: NodeDep) -> Offboarding:
        """Forget the partner node's keys and refuse it from now on (409 until its
        purge is confirmed)."""
        _at_hq(node)
        return await offboarding.retire(node.store, node.config, partner, audit=node.audit.draft(
            OPERATOR, "offboard", collection="nodes", peer=partner, reason="retire"))
