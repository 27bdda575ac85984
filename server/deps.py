"""Dependency providers of the app."""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide

from server.auth import principal_of
from server.node import Node
from server.sessions import Principal

#: a route handler's parameter for the running node
NodeDep = NamedDependency[Node]
#: a route handler's parameter for the signed-in caller (401 without a valid access token)
PrincipalDep = NamedDependency[Principal]


def _node(state: State) -> Node:
    return state.node  # type: ignore[no-any-return]


async def _principal(request: Request[Any, Any, Any]) -> Principal:
    return await principal_of(request)


DEPENDENCIES = {"node": Provide(_node, sync_to_thread=False), "principal": Provide(_principal)}
