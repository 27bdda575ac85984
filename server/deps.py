"""Dependency providers of the app."""

from __future__ import annotations

from litestar.datastructures import State
from litestar.di import NamedDependency, Provide

from server.node import Node

#: a route handler's parameter for the running node
NodeDep = NamedDependency[Node]


def _node(state: State) -> Node:
    return state.node  # type: ignore[no-any-return]


DEPENDENCIES = {"node": Provide(_node, sync_to_thread=False)}
