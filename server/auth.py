"""Who may call: signed-in users (`require_user`, `require_role`) and the operator.

Users present an access token from ``POST /auth/sign-in`` as
``Authorization: Bearer <token>``; server/sessions.py checks it against the user
row here on every request. The guards cache the `Principal` on the request, and
the ``principal`` dependency (server/deps.py) hands it to a route.

Operator routes still take one bearer token from the environment
(``OUTPOST_ADMIN_TOKEN``), never from a file in the repository. Without it the
operator routes refuse every call.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Awaitable, Callable
from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from server.errors import UnauthorizedError
from server.sessions import Principal, RoleRequiredError

TOKEN_ENV = "OUTPOST_ADMIN_TOKEN"
_PRINCIPAL = "outpost.principal"

Guard = Callable[[ASGIConnection, BaseRouteHandler], Awaitable[None]]  # type: ignore[type-arg]


def admin_token() -> str | None:
    token = os.environ.get(TOKEN_ENV, "")
    return token or None


def bearer(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    """The bearer token of a request, if it has one."""
    scheme, _, presented = connection.headers.get("authorization", "").partition(" ")
    return (presented.strip() or None) if scheme.lower() == "bearer" else None


def client_address(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    return connection.client.host if connection.client is not None else "unknown"


def require_admin(connection: ASGIConnection, _: BaseRouteHandler) -> None:  # type: ignore[type-arg]
    """Guard: the caller presents ``Authorization: Bearer <OUTPOST_ADMIN_TOKEN>``."""
    expected = connection.app.state.admin_token
    if expected is None:
        raise UnauthorizedError(f"This node has no operator token; start it with {TOKEN_ENV} set")
    scheme, _, presented = connection.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(presented.encode(), expected.encode()):
        raise UnauthorizedError("Missing or wrong bearer token")


async def principal_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Principal:
    """The signed-in caller (checked once per request); raises `NotAuthenticatedError`."""
    cached = connection.scope.get(_PRINCIPAL)  # type: ignore[misc]
    if cached is None:
        cached = await connection.app.state.node.auth.authenticate(bearer(connection))
        connection.scope[_PRINCIPAL] = cached  # type: ignore[literal-required]
    return cached  # type: ignore[no-any-return]


async def require_user(connection: ASGIConnection, _: BaseRouteHandler) -> None:  # type: ignore[type-arg]
    """Guard: the caller is a signed-in user whose account is live at this node."""
    await principal_of(connection)


def require_role(*roles: str) -> Guard:
    """Guard: a signed-in user with one of ``roles``."""

    async def guard(connection: ASGIConnection, _: BaseRouteHandler) -> None:  # type: ignore[type-arg]
        principal = await principal_of(connection)
        if principal.role not in roles:
            raise RoleRequiredError(roles, principal.role)

    return guard
