"""Operator authentication until users and roles arrive: one bearer token.

The token comes from the environment (``OUTPOST_ADMIN_TOKEN``), never from a
file in the repository. Without it the guarded routes refuse every call.
"""

from __future__ import annotations

import hmac
import os

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from server.errors import UnauthorizedError

TOKEN_ENV = "OUTPOST_ADMIN_TOKEN"


def admin_token() -> str | None:
    token = os.environ.get(TOKEN_ENV, "")
    return token or None


def require_admin(connection: ASGIConnection, _: BaseRouteHandler) -> None:
    """Guard: the caller presents ``Authorization: Bearer <OUTPOST_ADMIN_TOKEN>``."""
    expected = connection.app.state.admin_token
    if expected is None:
        raise UnauthorizedError(f"This node has no operator token; start it with {TOKEN_ENV} set")
    scheme, _, presented = connection.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(presented.encode(), expected.encode()):
        raise UnauthorizedError("Missing or wrong bearer token")
