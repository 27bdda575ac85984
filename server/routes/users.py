"""Users, for the operator (``OUTPOST_ADMIN_TOKEN`` for now): defined at HQ only.

Reading works at any node (each holds its site's users); writes are HQ's.
"""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, get, post
from litestar.params import JSONBody, Parameter

from server.audit_log import OPERATOR
from server.deps import NodeDep
from server.errors import WrongNodeError, problems
from server.node import Node
from server.users import UserCreate, create_user, list_users, live_user, revoke_tokens, set_disabled
from server.views import UserView, to_view
from sync.audit import AuditDraft
from sync.ids import ROW_ID_PATTERN

UserIdParam = Annotated[str, Parameter(pattern=ROW_ID_PATTERN, description="user id (ULID)")]


def _entry(node: Node, user_id: str, reason: str) -> AuditDraft:
    """The audit entry of an operator's change to a user, committed with the change."""
    return node.audit.draft(OPERATOR, "user_admin", collection="users", row_id=user_id, reason=reason)


def _at_hq(node: Node, operation: str) -> None:
    if node.config.role != "hq":
        raise WrongNodeError(operation, node.config.node_id, node.hq)


class UserAdminController(Controller):
    path = "/users"
    tags = ["users"]

    @post("/", operation_id="CreateUser",
          responses=problems(400, 401, 409, 413, 422), name="users:create", status_code=201)
    async def create(self, data: JSONBody[UserCreate], node: NodeDep) -> UserView:  # type: ignore[valid-type]
        """Define a user, at HQ. The password is hashed (Argon2id) before anything
        is stored; the user replicates to the nodes of its site."""
        _at_hq(node, "users create")
        return to_view(UserView, await create_user(node.store, node.auth.passwords, data,
                                                   audit=lambda row_id: _entry(node, row_id, "create")))

    @get("/", operation_id="ListUsers", responses=problems(400, 401), name="users:list")
    async def list_all(self, node: NodeDep, username: Annotated[str | None, Parameter(
            max_length=64, description="only the user of this username")] = None) -> list[UserView]:  # type: ignore[valid-type]
        """The live users this node holds: all of them at HQ, its site's elsewhere."""
        return [to_view(UserView, row) for row in await list_users(node.store, username=username)]

    @get("/{user_id:str}", operation_id="GetUser", responses=problems(400, 401, 404), name="users:get")
    async def get(self, user_id: UserIdParam, node: NodeDep) -> UserView:  # type: ignore[valid-type]
        """One user as this node holds it."""
        return to_view(UserView, await live_user(node.store, user_id))

    @post("/{user_id:str}/disable", operation_id="DisableUser",
          responses=problems(400, 401, 404, 409), name="users:disable", status_code=200)
    async def disable(self, user_id: UserIdParam, node: NodeDep) -> UserView:  # type: ignore[valid-type]
        """At HQ: the user can no longer sign in, and every token of theirs stops
        working, at once here and at their site with its next sync."""
        _at_hq(node, "users disable")
        return to_view(UserView, await set_disabled(node.store, user_id, True, audit=_entry(node, user_id, "disable")))

    @post("/{user_id:str}/enable", operation_id="EnableUser",
          responses=problems(400, 401, 404, 409), name="users:enable", status_code=200)
    async def enable(self, user_id: UserIdParam, node: NodeDep) -> UserView:  # type: ignore[valid-type]
        """At HQ: the user may sign in again (tokens from before stay revoked)."""
        _at_hq(node, "users enable")
        return to_view(UserView, await set_disabled(node.store, user_id, False, audit=_entry(node, user_id, "enable")))

    @post("/{user_id:str}/revoke-tokens", operation_id="RevokeUserTokens",
          responses=problems(400, 401, 404, 409), name="users:revoke-tokens",
          status_code=200)
    async def revoke_tokens(self, user_id: UserIdParam, node: NodeDep) -> UserView:  # type: ignore[valid-type]
        """At HQ: end every session and token of the user (a lost phone, say);
        they sign in again. Takes effect here at once, at their site with its next sync."""
        _at_hq(node, "users revoke-tokens")
        return to_view(UserView, await revoke_tokens(node.store, user_id, audit=_entry(node, user_id, "revoke_tokens")))
