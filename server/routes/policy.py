"""The access policy in force at this node, for the operator: what it is, and
reloading it from its file (``policy.toml`` beside the site config, or the
config's ``policy``) without a restart.

A file that does not load is refused whole (422 with the policy error's message:
file, line, place, what is wrong) and the policy in force stays in force. A
reload touches no data: what the new policy shows or hides applies from the next
request and sync on. Each reload, and each refused one, is an access event.
"""

from __future__ import annotations

import msgspec
from litestar import Controller, get, post

from server.access import OPERATOR_ACTOR
from server.config import ConfigError
from server.deps import NodeDep
from server.errors import PolicyReloadError, problems
from server.policy import Policy


class PolicyInForce(msgspec.Struct, kw_only=True):
    """The policy this node applies now."""

    #: the file it was read from
    path: str
    #: the roles it grants anything, in file order
    roles: list[str]
    #: the roles that may exist at this node's kind of site
    roles_here: list[str]
    #: site kind -> which rows its nodes hold
    node_rows: dict[str, str]


def in_force(policy: Policy, site_kind: str) -> PolicyInForce:
    return PolicyInForce(path=policy.path, roles=list(policy.roles), roles_here=sorted(policy.roles_at(site_kind)),
                         node_rows=dict(policy.node_rows))


class PolicyController(Controller):
    path = "/policy"
    tags = ["policy"]

    @get("/", operation_id="GetPolicy", responses=problems(401), name="policy:get", security=[{"OperatorToken": []}])
    async def show(self, node: NodeDep) -> PolicyInForce:  # type: ignore[valid-type]
        """The access policy in force at this node."""
        return in_force(node.policy, node.config.role)

    @post("/reload", operation_id="ReloadPolicy", responses=problems(401, 422), name="policy:reload", status_code=200,
          security=[{"OperatorToken": []}])
    async def reload(self, node: NodeDep) -> PolicyInForce:  # type: ignore[valid-type]
        """Read the policy file again and put it in force. A bad file is refused
        (422, naming the file, line and place) and the policy in force stays."""
        try:
            policy = node.reload_policy()
        except ConfigError as exc:
            await node.audit.refused("operator", None, "reload_policy", collection="policy", status=422,
                                          reason="policy_invalid")
            raise PolicyReloadError(str(node.config.policy_path), exc.reason) from None
        await node.audit.record(OPERATOR_ACTOR, "reload_policy", collection="policy")
        return in_force(policy, node.config.role)
