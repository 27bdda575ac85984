"""Sign-in at this node: passwords and phones in, tokens out (server/sessions.py).

Credentials travel in request bodies only, never in the path or query string.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

import msgspec
from litestar import Controller, Request, get, post
from litestar.params import JSONBody
from msgspec import Meta

from server.auth import client_address, require_role, require_user
from server.deps import NodeDep, PrincipalDep
from server.errors import WrongNodeError, problems
from server.sessions import DeviceCredential, ForbiddenError, Principal, TokenPair
from sync.ids import RowId

#: the security scheme of routes that take a user's access token (see server/app.py)
USER_SECURITY = [{"AccessToken": []}]


class SignInRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A username and password. Neither is ever logged or echoed."""

    username: Annotated[str, Meta(min_length=1, max_length=64)]
    password: Annotated[str, Meta(min_length=1, max_length=1024)]

    def __repr__(self) -> str:
        return "SignInRequest(username=***, password=***)"

    def __rich_repr__(self) -> Iterator[tuple[str, object]]:
        yield from ()


class RefreshRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The refresh token of the last pair: usable once."""

    refresh_token: Annotated[str, Meta(min_length=1, max_length=256)]

    def __repr__(self) -> str:
        return "RefreshRequest(refresh_token=***)"

    def __rich_repr__(self) -> Iterator[tuple[str, object]]:
        yield from ()


class DeviceEnrollRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    label: Annotated[str, Meta(min_length=1, max_length=64, description="e.g. the phone's model")] | None = None


class DeviceSignInRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """An enrolled phone's id and credential."""

    device_id: RowId
    device_secret: Annotated[str, Meta(min_length=1, max_length=256)]

    def __repr__(self) -> str:
        return f"DeviceSignInRequest(device_id={self.device_id!r}, device_secret=***)"

    def __rich_repr__(self) -> Iterator[tuple[str, object]]:
        yield "device_id", self.device_id


class AuthController(Controller):
    path = "/auth"
    tags = ["auth"]

    @post("/sign-in", operation_id="SignIn",
          responses=problems(400, 401, 403, 413, 429), name="auth:sign-in", status_code=200,
          opt={"access": "sign_in", "collection": "auth"})
    async def sign_in(self, data: JSONBody[SignInRequest], node: NodeDep, request: Request) -> TokenPair:  # type: ignore[valid-type,type-arg]
        """Sign in with a username and password: a short-lived access token and a
        refresh token. Works at HQ and at the nodes of the user's site, also while
        HQ is unreachable. Failed attempts are limited per username and per
        address (429 with ``Retry-After``). Each sign-in and each failure is in
        the audit log (the user's id; never the name typed)."""
        pair = await node.auth.sign_in(data.username, data.password, address=client_address(request))
        await node.audit.record(pair.principal.user_id, "sign_in", role=pair.principal.role, collection="auth")
        return pair

    @post("/refresh", operation_id="RefreshTokens",
          responses=problems(400, 401, 403, 413), name="auth:refresh", status_code=200)
    async def refresh(self, data: JSONBody[RefreshRequest], node: NodeDep) -> TokenPair:  # type: ignore[valid-type]
        """Trade a refresh token for a new pair, at the node that issued it. Each
        refresh token works once: presenting one again revokes its session."""
        return await node.auth.refresh(data.refresh_token)

    @post("/sign-out", operation_id="SignOut",
          responses=problems(401), name="auth:sign-out", status_code=204, guards=[require_user],
          security=USER_SECURITY)
    async def sign_out(self, principal: PrincipalDep, node: NodeDep) -> None:  # type: ignore[valid-type]
        """End this session at the node that issued its token: its refresh token and
        its access tokens stop working at once."""
        if not await node.auth.sign_out(principal):
            raise WrongNodeError("sign-out", node.config.node_id, principal.issuer)

    @get("/me", operation_id="GetMe",
         responses=problems(401), name="auth:me", guards=[require_user], security=USER_SECURITY)
    async def me(self, principal: PrincipalDep) -> Principal:  # type: ignore[valid-type]
        """Who this access token signs in, as this node knows the user now."""
        return principal  # type: ignore[no-any-return]


class DeviceController(Controller):
    path = "/devices"
    tags = ["auth"]

    @post("/enroll", operation_id="EnrollDevice",
          responses=problems(400, 401, 403, 413), name="devices:enroll", status_code=201,
          guards=[require_role("account_manager")], security=USER_SECURITY)
    async def enroll(self, data: JSONBody[DeviceEnrollRequest], principal: PrincipalDep, node: NodeDep) -> DeviceCredential:  # type: ignore[valid-type]
        """An account manager enrols their phone with this node: a device id and a
        credential, shown once (the node keeps only its hash). The phone trades it
        for tokens of this user at ``/devices/sign-in``."""
        if principal.device_id is not None:
            raise ForbiddenError("A phone's session cannot enrol devices; sign in with a password to enrol one")
        return await node.auth.enroll_device(principal, data.label)

    @post("/sign-in", operation_id="DeviceSignIn",
          responses=problems(400, 401, 403, 413, 429), name="devices:sign-in", status_code=200,
          opt={"access": "sign_in", "collection": "auth"})
    async def sign_in(self, data: JSONBody[DeviceSignInRequest], node: NodeDep, request: Request) -> TokenPair:  # type: ignore[valid-type,type-arg]
        """An enrolled phone signs in with its credential, as the user who enrolled it."""
        pair = await node.auth.device_sign_in(data.device_id, data.device_secret, address=client_address(request))
        await node.audit.record(pair.principal.user_id, "sign_in", role=pair.principal.role, collection="auth",
                                reference=data.device_id)
        return pair
