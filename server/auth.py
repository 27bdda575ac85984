"""Who may call: signed-in users (`require_user`, `require_role`) and the operator.

Users present an access token from ``POST /auth/sign-in`` as
``Authorization: Bearer <token>``; server/sessions.py checks it against the user
row here on every request. The guards cache the `Principal` on the request, and
the ``principal`` dependency (server/deps.py) hands it to a route.

Operator routes still take one bearer token from the environment
(``OUTPOST_ADMIN_TOKEN``), never from a file in the repository. Without it the
operator routes refuse every call.

Routes under the access policy (the customers API) take either: `require_actor`
resolves the caller to a `server.access.Actor` (the operator, unrestricted, or a
user the policy applies to; see server/access.py), cached on the request and
handed to the route by the ``actor`` dependency; `require_operator` keeps an
operation to the operator (403 for a user). Such routes name their action in
``opt={"access": ...}``, and `record_refusal` (an ``after_exception`` hook)
appends an audit entry for each of their refusals (401, 403, 404, 429), with
what `note_access` noted of the request: names and codes, never values.
"""

from __future__ import annotations

import hmac
import logging
import os
import re
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from litestar.connection import ASGIConnection
from litestar.exceptions import HTTPException
from litestar.handlers.base import BaseRouteHandler
from litestar.types import Scope

from server.access import ANONYMOUS, OPERATOR_ACTOR, Actor, OperatorOnlyError, user_actor
from server.errors import UnauthorizedError, status_of
from server.sessions import Principal, RoleRequiredError
from sync.ids import ROW_ID_PATTERN

log = logging.getLogger(__name__)

TOKEN_ENV = "OUTPOST_ADMIN_TOKEN"
_PRINCIPAL = "outpost.principal"
_ACTOR = "outpost.actor"
_NOTE = "outpost.access_note"
_BEARER = "outpost.bearer"
#: the statuses of a refusal that gets an audit entry: not signed in, not allowed,
#: not in scope, a state change that cannot happen, a rule that refuses the change
#: (a missing consent), too many; a malformed request (400) changed nothing and
#: named nothing, and is not an access
REFUSALS = frozenset({401, 403, 404, 409, 422, 429})
_ROW_ID = re.compile(ROW_ID_PATTERN)

Guard = Callable[[ASGIConnection, BaseRouteHandler], Awaitable[None]]  # type: ignore[type-arg]


def admin_token() -> str | None:
    token = os.environ.get(TOKEN_ENV, "")
    return token or None


def bearer(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    """The bearer token of a request, if it has one (read from the headers once per request)."""
    scope: dict[str, Any] = connection.scope  # type: ignore[assignment]
    if _BEARER not in scope:
        scheme, _, presented = connection.headers.get("authorization", "").partition(" ")
        scope[_BEARER] = (presented.strip() or None) if scheme.lower() == "bearer" else None
    return scope[_BEARER]  # type: ignore[no-any-return]


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


# ---------------------------------------------------------------- routes under the access policy


def _is_operator(connection: ASGIConnection[Any, Any, Any, Any]) -> bool:
    expected = connection.app.state.admin_token
    presented = bearer(connection)
    return expected is not None and presented is not None and hmac.compare_digest(presented.encode(), expected.encode())


async def actor_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Actor:
    """The operator, or the signed-in user as the policy sees them (checked once per
    request); raises `NotAuthenticatedError` for anyone else."""
    cached = connection.scope.get(_ACTOR)  # type: ignore[misc]
    if cached is None:
        if _is_operator(connection):
            cached = OPERATOR_ACTOR
        else:
            node = connection.app.state.node
            principal = await principal_of(connection)
            cached = await node.auth.derive(bearer(connection) or "", principal,
                                            lambda: user_actor(node.config, node.store, principal))
        connection.scope[_ACTOR] = cached  # type: ignore[literal-required]
    return cached  # type: ignore[no-any-return]


async def require_actor(connection: ASGIConnection, _: BaseRouteHandler) -> None:  # type: ignore[type-arg]
    """Guard: the operator's token, or a signed-in user's access token."""
    await actor_of(connection)


async def require_user_actor(connection: ASGIConnection, _: BaseRouteHandler) -> None:  # type: ignore[type-arg]
    """Guard: `require_user` then `require_actor` in one (Litestar copies the
    route handler for every guard it runs, a cost a hot route notices)."""
    await principal_of(connection)
    await actor_of(connection)


async def require_operator(connection: ASGIConnection, handler: BaseRouteHandler) -> None:  # type: ignore[type-arg]
    """Guard: only the operator; a signed-in user gets 403 (`OperatorOnlyError`)."""
    actor = await actor_of(connection)
    if not actor.is_operator:
        raise OperatorOnlyError(handler.opt.get("access") or handler.name or "this", actor.role)


def note_access(connection: ASGIConnection[Any, Any, Any, Any], *, fields: Iterable[str] = (),
                purpose: str | None = None, reference: str | None = None) -> None:
    """What a call is about (field names, a purpose code, a reference id), for the
    audit entry should it be refused."""
    connection.scope[_NOTE] = {"fields": tuple(fields), "purpose": purpose, "reference": reference}  # type: ignore[literal-required]


async def record_refusal(exc: Exception, scope: Scope) -> None:
    """``after_exception`` hook: append an audit entry for a refused call (one of
    `REFUSALS`) to a route with ``opt={"access": action}``. A failure to record
    is logged; it never changes the answer."""
    handler = scope.get("route_handler")
    action = handler.opt.get("access") if handler is not None else None
    if action is None:
        return
    status = exc.status_code if isinstance(exc, HTTPException) else status_of(exc)
    if status not in REFUSALS:
        return
    actor: Actor | None = scope.get(_ACTOR)  # type: ignore[assignment]
    note: dict[str, Any] = scope.get(_NOTE) or {}  # type: ignore[assignment]
    row_id = (scope.get("path_params") or {}).get("row_id")
    try:
        await scope["litestar_app"].state.node.audit.refused(
            ANONYMOUS if actor is None else actor.id, None if actor is None else actor.role, action,
            status=status, reason=getattr(exc, "reason", None) or getattr(exc, "code", None) or type(exc).__name__,
            collection=handler.opt.get("collection", "customers"),
            row_id=row_id if isinstance(row_id, str) and _ROW_ID.match(row_id) else None,
            fields=note.get("fields") or getattr(exc, "fields", ()),
            purpose=note.get("purpose"), reference=note.get("reference"),
        )
    except Exception as failure:  # noqa: BLE001 - the refusal stands; the log says the record is missing
        log.error("access.event not recorded", extra={"action": action, "status": status,
                                                      "error": type(failure).__name__})
