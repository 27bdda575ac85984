"""Dependency providers of the app."""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide

from server.access import Actor
from server.auth import actor_of, principal_of
from server.node import Node
from server.sessions import Principal

#: a route handler's parameter for the running node
NodeDep = NamedDependency[Node]
#: a route handler's parameter for the signed-in caller (401 without a valid access token)
PrincipalDep = NamedDependency[Principal]
#: a route handler's parameter for the caller of a route under the access policy:
#: the operator or a signed-in user (server/access.py; needs the `require_actor` guard)
ActorDep = NamedDependency[Actor]


def _node(state: State) -> Node:
    return state.node  # type: ignore[no-any-return]


# Each takes ``node`` (unused) so that Litestar resolves it after the node, not
# alongside: a batch of two or more dependencies is resolved in an anyio task
# group per request, which cost more than the rest of a small handler.
async def _principal(request: Request[Any, Any, Any], node: NodeDep) -> Principal:  # type: ignore[valid-type]  # noqa: ARG001
    return await principal_of(request)


async def _actor(request: Request[Any, Any, Any], node: NodeDep) -> Actor:  # type: ignore[valid-type]  # noqa: ARG001
    return await actor_of(request)


DEPENDENCIES = {
    "node": Provide(_node, sync_to_thread=False), "principal": Provide(_principal), "actor": Provide(_actor),
}
