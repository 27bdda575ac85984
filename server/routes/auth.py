"""Sign-in at this node: passwords and phones in, tokens out (server/sessions.py).

Credentials travel in request bodies only, never in the path or query string.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

import base64

import msgspec
from litestar import Controller, Request, get, post
from litestar.params import JSONBody
from msgspec import Meta

from crypto.errors import SignatureError
from crypto.identity import NodePublicKeys, verify_signature
from server import sync_auth
from server.auth import client_address, require_role, require_user
from server.deps import NodeDep, PrincipalDep
from server.errors import BadSignatureError, WrongNodeError, problems
from server.phones import PhoneKeys, PhoneKeysRequest, Registered, Registration, registered_keys
from server.routes.keys import EnrollRequest, enroll_message
from server.sessions import DeviceCredential, ForbiddenError, Principal, TokenPair
from sync.ids import RowId
from sync.store.sqlite import wall_clock_ms

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
    #: the phone's node keys, to sync with this node (api_spec/sync-protocol.md, Phones):
    #: ``node_id`` is ``<this node>.<a new ULID in lowercase>``, signed as at ``/nodes/enroll``
    #: (not ``node``: a body member named like a dependency of the route, bad, is a 500 in Litestar)
    phone_keys: EnrollRequest | None = None


def _phone_keys(request: EnrollRequest) -> NodePublicKeys:
    """The public keys of a phone's enrolment, once its signature proves it holds
    the signing key; raises `BadSignatureError`."""
    try:
        public = NodePublicKeys(node_id=request.node_id, key_version=request.key_version,
                                sign_pub=_b64(request.sign_pub), kem_pub=_b64(request.kem_pub))
        if len(public.sign_pub) != 32 or len(public.kem_pub) != 32:
            raise SignatureError("phone enrolment")
        verify_signature(public.sign_pub, _b64(request.signature), enroll_message(public), "phone enrolment")
    except (SignatureError, ValueError):
        raise BadSignatureError(request.node_id) from None
    return public


def _b64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


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
          responses=problems(400, 401, 403, 409, 413, 422), name="devices:enroll", status_code=201,
          guards=[require_role("account_manager")], security=USER_SECURITY)
    async def enroll(self, data: JSONBody[DeviceEnrollRequest], principal: PrincipalDep, node: NodeDep) -> DeviceCredential:  # type: ignore[valid-type]
        """An account manager enrols their phone with this node: a device id and a
        credential, shown once (the node keeps only its hash). The phone trades it
        for tokens of this user at ``/devices/sign-in``."""
        if principal.device_id is not None:
            raise ForbiddenError("A phone's session cannot enrol devices; sign in with a password to enrol one")
        if data.phone_keys is None:
            return await node.auth.enroll_device(principal, data.label)
        public = _phone_keys(data.phone_keys)
        return await node.enroll_phone(principal, data.label, public, audit=node.audit.draft(
            principal.user_id, "key_operation", role=principal.role, collection="keys", peer=public.node_id,
            reason="enroll_phone"))

    @post("/keys", operation_id="GetPhoneKeys", name="devices:keys", status_code=200,
          responses=problems(400, 401, 403, 413))
    async def keys(self, data: JSONBody[PhoneKeysRequest], request: Request, node: NodeDep) -> PhoneKeys:  # type: ignore[valid-type,type-arg]
        """A phone enrolled here fetches the scope keys it may hold now, HPKE-wrapped
        for its key-receiving key (the classes its user's policy reads, of this
        node's group). Signed by the phone like a sync request (route ``keys``);
        refused once its user is disabled or revoked. A key it holds that is not
        listed was rotated away: the phone destroys it."""
        body = await request.body()
        await _check_signed(node, request, "keys", data.phone, body)
        answer = await node.keys_for_phone(data.phone)
        await node.audit.record(data.phone, "key_operation", role="node", collection="keys", peer=data.phone,
                                reason="phone_keys", counts={"keys": len(answer.keys)})
        return answer

    @post("/register", operation_id="RegisterPhone", name="devices:register", status_code=200,
          responses=problems(400, 403, 409, 413, 422))
    async def register(self, data: JSONBody[Registration], request: Request, node: NodeDep) -> Registered:  # type: ignore[valid-type,type-arg]
        """A branch registers a phone enrolled there with its upstream (HQ), so
        the phone's changes it forwards are taken as from a node below it.
        Signed by the branch like a sync request (route ``register``)."""
        body = await request.body()
        header = request.headers.get(sync_auth.HEADER) or ""
        site = header.rsplit(".", 3)[0] if header.count(".") >= 3 else ""
        record = await node.store.node(site) if site else None
        if record is None or record.sign_pub is None:
            raise sync_auth.SyncAuthError(site or "unknown", "a phone is registered by its enrolled branch, signed")
        await _check_signed(node, request, "register", site, body)
        await node.register_phone(site, registered_keys(data))
        await node.audit.record(site, "key_operation", role="node", collection="keys", peer=data.node_id,
                                reason="register_phone")
        return Registered(node_id=data.node_id, parent=site)

    @post("/sign-in", operation_id="DeviceSignIn",
          responses=problems(400, 401, 403, 413, 429), name="devices:sign-in", status_code=200,
          opt={"access": "sign_in", "collection": "auth"})
    async def sign_in(self, data: JSONBody[DeviceSignInRequest], node: NodeDep, request: Request) -> TokenPair:  # type: ignore[valid-type,type-arg]
        """An enrolled phone signs in with its credential, as the user who enrolled it."""
        pair = await node.auth.device_sign_in(data.device_id, data.device_secret, address=client_address(request))
        await node.audit.record(pair.principal.user_id, "sign_in", role=pair.principal.role, collection="auth",
                                reference=data.device_id)
        return pair


async def _check_signed(node: NodeDep, request: Request, route: str, claimed: str, body: bytes) -> None:  # type: ignore[valid-type,type-arg]
    try:
        await sync_auth.check(node.store, request.headers.get(sync_auth.HEADER), route=route, claimed=claimed,
                              body=body, now_ms=wall_clock_ms(), max_drift_ms=node.config.sync.max_drift_ms)
    except sync_auth.SyncAuthError as exc:
        await node.audit.refused(claimed, None, "key_operation", collection="keys", status=403, reason="bad_signature")
        raise exc
