"""Sign-in at one node: passwords, sessions, access and refresh tokens, devices.

Users are replicated rows (``users``, defined at HQ, sent to the nodes of their
site), so a branch signs its staff in while HQ is unreachable. What a sign-in
creates is local to the node that made it:

* a **session** (one sign-in, or one phone's exchange of its credential) with a
  family of **refresh tokens**: random, stored only as SHA-256 hashes, each
  spent once. Refreshing spends the token and returns its successor; presenting
  a spent one again means two parties hold the family, so the whole session is
  revoked (RFC 9700, 4.14.2).
* short-lived **access tokens** (server/tokens.py) signed with the node's
  Ed25519 identity. A node accepts its own, and those of the issuers its config
  trusts (verified with their keys from its registry).

Every request's token is checked against the user row as this node holds it
now: deleted, disabled, or revoked since the session began (the replicated
``tokens_valid_after_ms`` has grown past the session's ``rev``), or its role or
site changed. So a revocation takes effect at once at the node where it is
made, and at every other node with the sync that brings it the row (ASVS
5.0, 8.3.2). Tokens this node issued are also checked against their
session, so signing out ends them at once.

Only user rows as HQ wrote them count: a row with any field written by another
node (which no API allows, so only a node pushing what it should not) signs no
one in and keeps no token alive.

Failed sign-ins are limited per username and per client address; an unknown
username costs the same Argon2 work as a known one. No password, hash, token or
typed username reaches a log line or an error message.

No web framework here: server/routes/auth.py and server/auth.py call it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any, Literal

import msgspec

from crypto.keystore import Keystore
from server.config import SiteConfig
from server.passwords import PasswordCheck
from server.rate_limit import FailureLimit
from server.single_flight import SingleFlight
from server.tokens import AccessClaims, TokenError, sign_access_token, token_key_id, verify_access_token
from sync.ids import new_ulid
from sync.schema import Role
from sync.store import DeviceRecord, SessionRecord
from sync.store.sqlite import SqliteStore, wall_clock_ms

log = logging.getLogger(__name__)

REFRESH_PREFIX = "opr_"
DEVICE_PREFIX = "opd_"
SECRET_BYTES = 32
#: sessions that ended longer ago than this are deleted (kept a while for the record)
KEEP_ENDED_MS = 24 * 3_600_000
PURGE_EVERY_MS = 3_600_000


# ---------------------------------------------------------------- what callers see


#: access tokens whose check is remembered (then forgotten all at once)
CHECKED_TOKENS = 10_000


class Principal(msgspec.Struct, frozen=True, kw_only=True):
    """Who is calling: a signed-in user (or their phone), as its token and the
    user row at this node agree."""

    user_id: str
    username: str
    role: Role
    site: str
    team: str | None = None
    #: the phone, for a device session
    device_id: str | None = None
    #: the node that issued the token, and the session there
    issuer: str
    session_id: str


class TokenPair(msgspec.Struct, kw_only=True):
    """A sign-in's tokens. Send ``access_token`` as ``Authorization: Bearer``; trade
    ``refresh_token`` (once) for a new pair before the access token expires."""

    access_token: str
    token_type: Literal["Bearer"] = "Bearer"
    #: seconds the access token is valid for
    expires_in: int
    refresh_token: str
    #: seconds until the session ends and a new sign-in is needed
    refresh_expires_in: int
    principal: Principal


class DeviceCredential(msgspec.Struct, kw_only=True):
    """A phone's credential, shown once: this node keeps only its hash."""

    device_id: str
    device_secret: str
    user_id: str
    #: the phone's node id, when it enrolled its keys to sync here (server/phones.py)
    node_id: str | None = None


# ---------------------------------------------------------------- errors

Reason = Literal[
    "missing_token", "malformed", "bad_signature", "untrusted_issuer", "unknown_key", "expired", "not_yet_valid",
    "user_unknown", "deleted", "disabled", "revoked", "user_changed", "session_ended",
    "refresh_unknown", "refresh_reused", "refresh_revoked", "refresh_expired", "device_credentials",
]


class NotAuthenticatedError(Exception):
    """No valid credential: a 401 with a stable ``reason`` and what to do."""

    code = "unauthorized"
    MESSAGES: dict[str, str] = {
        "missing_token": "Sign in first: this call needs `Authorization: Bearer <access token>`",
        **TokenError.MESSAGES,
        "user_unknown": "The token's user is not known at this node; sign in again",
        "deleted": "This account no longer exists",
        "disabled": "This account is disabled; ask HQ to enable it",
        "revoked": "This account's tokens were revoked; sign in again",
        "user_changed": "This account's role or site changed since sign-in; sign in again",
        "session_ended": "This session has ended (signed out or revoked); sign in again",
        "refresh_unknown": "The refresh token is not valid at this node; sign in again",
        "refresh_reused": "This refresh token was already used; as a precaution its session is revoked: sign in again",
        "refresh_revoked": "This session has ended (signed out or revoked); sign in again",
        "refresh_expired": "This session has expired; sign in again",
        "device_credentials": "Wrong device id or device credential",
    }

    def __init__(self, reason: Reason) -> None:
        self.reason = reason
        self.message = self.MESSAGES[reason]
        super().__init__(self.message)

    def details(self) -> dict[str, object]:
        return {"reason": self.reason}


class SignInFailedError(Exception):
    """Wrong username or password (which of the two is not said)."""

    code = "sign_in_failed"

    def __init__(self) -> None:
        self.message = "Wrong username or password"
        super().__init__(self.message)

    def details(self) -> dict[str, object]:
        return {}


class AccountDisabledError(Exception):
    """The password was right but the account may not sign in."""

    code = "account_disabled"

    def __init__(self) -> None:
        self.message = "This account is disabled; ask HQ to enable it"
        super().__init__(self.message)

    def details(self) -> dict[str, object]:
        return {}


class ForbiddenError(Exception):
    """The caller is signed in, but may not make this call."""

    code = "forbidden"

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(self.message)

    def details(self) -> dict[str, object]:
        return {}


class RoleRequiredError(ForbiddenError):
    """The caller's role may not make this call."""

    def __init__(self, allowed: tuple[str, ...], role: str) -> None:
        self.allowed = allowed
        self.role = role
        super().__init__(f"This call needs the role {' or '.join(f'`{r}`' for r in allowed)}; "
                         f"you are signed in as `{role}`")

    def details(self) -> dict[str, object]:
        return {"allowed_roles": list(self.allowed), "role": self.role}


class TooManyAttemptsError(Exception):
    """Too many failed sign-ins for one username or from one address: a 429."""

    code = "too_many_attempts"

    def __init__(self, scope: Literal["account", "address"], retry_after_s: int) -> None:
        self.scope = scope
        self.retry_after_s = retry_after_s
        self.message = (f"Too many failed sign-ins {'for this account' if scope == 'account' else 'from this address'}; "
                        f"try again in {retry_after_s} s")
        super().__init__(self.message)

    def details(self) -> dict[str, object]:
        return {"scope": self.scope, "retry_after_s": self.retry_after_s}

    def headers(self) -> dict[str, str]:
        return {"retry-after": str(self.retry_after_s)}


# ---------------------------------------------------------------- the authenticator


def secret_digest(secret: str) -> bytes:
    """How a refresh token or device credential is stored: SHA-256 (they are 256 random bits)."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).digest()


def refusal(user: dict[str, Any] | None, rev: int) -> Reason | None:
    """Why the user row refuses a session that began at revocation stamp ``rev``, or None."""
    if user is None or user["role"] is None or user["site"] is None:
        return "user_unknown"
    if user["deleted"]:
        return "deleted"
    if user["disabled"]:
        return "disabled"
    if user["tokens_valid_after_ms"] > rev:
        return "revoked"
    return None


class Authenticator:
    """Sign-in, refresh, sign-out and token checks at one node."""

    def __init__(
        self,
        store: SqliteStore,
        keystore: Keystore,
        config: SiteConfig,
        *,
        passwords: PasswordCheck | None = None,
        now_ms: Callable[[], int] = wall_clock_ms,
        entropy: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.store = store
        self.keystore = keystore
        self.node_id = config.node_id
        #: the only node whose writes to user rows count
        self.hq = config.node_id if config.upstream is None else config.upstream.node_id
        self.settings = config.auth
        self.trusted = frozenset(config.auth.trusted_issuers)
        self.passwords = passwords or PasswordCheck()
        self.now_ms = now_ms
        self.entropy = entropy
        window = config.auth.failure_window_s
        self.by_user = FailureLimit(config.auth.max_failures_per_user, window, now_s=lambda: self.now_ms() / 1000)
        self.by_address = FailureLimit(config.auth.max_failures_per_address, window, now_s=lambda: self.now_ms() / 1000)
        self._next_purge_ms = 0
        #: access token -> (the store's `auth_mark` when checked, its principal, its
        #: expiry in Unix s): a token is checked again only once something it was
        #: checked against may have changed (`SqliteStore.auth_mark`), or it expired
        self._checked: dict[str, tuple[tuple[int, int], Principal, int]] = {}
        #: access token -> (the principal, what else the edge derived from it): see `derive`
        self._derived: dict[str, tuple[Principal, Any]] = {}
        #: the checks under way, shared by the requests that present the same token meanwhile
        self._checks: SingleFlight[Principal] = SingleFlight()
        #: the derivations under way (`derive`), likewise
        self._derivations: SingleFlight[Any] = SingleFlight()

    # ------------------------------------------------------------ sign-in

    async def sign_in(self, username: str, password: str, *, address: str) -> TokenPair:
        """A new session for a username and password; raises `TooManyAttemptsError`,
        `SignInFailedError` or `AccountDisabledError`."""
        name = username.strip().lower()
        self._check_limits(address, name)
        user = await self._live_user(name)
        matched = await self.passwords.verify(None if user is None else user["password_hash"], password)
        if user is None or not matched:
            self.by_user.record(name)
            self.by_address.record(address)
            log.info("auth.sign_in refused", extra={"reason": "credentials",
                                                    "user_id": None if user is None else user["row_id"]})
            raise SignInFailedError()
        self.by_user.clear(name)
        reason = refusal(user, user["tokens_valid_after_ms"])
        if reason is not None:
            log.info("auth.sign_in refused", extra={"reason": reason, "user_id": user["row_id"]})
            raise AccountDisabledError()
        return await self._open_session(user, device_id=None)

    async def _live_user(self, username: str) -> dict[str, Any] | None:
        for row in await self.store.find_rows("users", limit=10, username=username):
            if not row["deleted"] and await self._from_hq(row["row_id"]):
                return row
        return None

    async def _user(self, user_id: str) -> dict[str, Any] | None:
        """The user row as HQ wrote it, or None."""
        row = await self.store.read_row("users", user_id)
        return row if row is not None and await self._from_hq(user_id) else None

    async def _from_hq(self, user_id: str) -> bool:
        foreign = sorted(f for f, origin in (await self.store.field_origins("users", user_id)).items()
                         if origin != self.hq)
        if foreign:
            log.warning("auth.user row written outside HQ: ignored", extra={"user_id": user_id,
                                                                           "fields": ",".join(foreign)})
        return not foreign

    def _check_limits(self, address: str, username: str | None) -> None:
        wait = self.by_address.retry_after_s(address)
        if wait is not None:
            raise TooManyAttemptsError("address", wait)
        wait = None if username is None else self.by_user.retry_after_s(username)
        if wait is not None:
            raise TooManyAttemptsError("account", wait)

    async def _open_session(self, user: dict[str, Any], *, device_id: str | None) -> TokenPair:
        now = self.now_ms()
        if now >= self._next_purge_ms:
            self._next_purge_ms = now + PURGE_EVERY_MS
            await self.store.purge_sessions(before_ms=now - KEEP_ENDED_MS)
        session = SessionRecord(
            session_id=self._new_id(now), user_id=user["row_id"], device_id=device_id,
            rev=user["tokens_valid_after_ms"], created_ms=now, expires_ms=now + self.settings.refresh_ttl_s * 1000,
        )
        refresh = self._new_secret(REFRESH_PREFIX)
        await self.store.create_session(session, secret_digest(refresh))
        log.info("auth.session opened", extra={"user_id": session.user_id, "session_id": session.session_id,
                                               "device_id": device_id})
        return self._pair(user, session, refresh, now)

    def _pair(self, user: dict[str, Any], session: SessionRecord, refresh: str, now_ms: int) -> TokenPair:
        iat = now_ms // 1000
        exp = min(now_ms + self.settings.access_ttl_s * 1000, session.expires_ms) // 1000
        claims = AccessClaims(
            iss=self.node_id, sub=user["row_id"], role=user["role"], site=user["site"], iat=iat, exp=exp,
            jti=self._new_id(now_ms), sid=session.session_id, rev=session.rev, dev=session.device_id,
        )
        return TokenPair(
            access_token=sign_access_token(claims, self.keystore.identity),
            expires_in=exp - iat,
            refresh_token=refresh,
            refresh_expires_in=max(0, (session.expires_ms - now_ms) // 1000),
            principal=_principal(user, claims),
        )

    # ------------------------------------------------------------ refresh and sign-out

    async def refresh(self, refresh_token: str) -> TokenPair:
        """Spend a refresh token for a new pair (the successor is in it); raises
        `NotAuthenticatedError` (reused: the session is revoked too)."""
        now = self.now_ms()
        successor = self._new_secret(REFRESH_PREFIX)
        outcome, session = await self.store.use_refresh_token(
            secret_digest(refresh_token), secret_digest(successor), now_ms=now
        )
        if outcome == "reused":
            assert session is not None
            log.warning("auth.refresh reused: session revoked",
                        extra={"user_id": session.user_id, "session_id": session.session_id})
        if outcome != "rotated":
            raise NotAuthenticatedError(f"refresh_{outcome}")  # type: ignore[arg-type]
        assert session is not None
        user = await self._user(session.user_id)
        reason = refusal(user, session.rev)
        if reason is not None:
            await self.store.revoke_session(session.session_id, now_ms=now, why=reason)
            raise NotAuthenticatedError(reason)
        assert user is not None
        return self._pair(user, session, successor, now)

    async def sign_out(self, principal: Principal) -> bool:
        """End the caller's session: its refresh tokens, and its access tokens at
        this node. False when the session is another node's (sign out there)."""
        if principal.issuer != self.node_id:
            return False
        await self.store.revoke_session(principal.session_id, now_ms=self.now_ms(), why="signed_out")
        log.info("auth.signed_out", extra={"user_id": principal.user_id, "session_id": principal.session_id})
        return True

    # ------------------------------------------------------------ every request

    async def authenticate(self, token: str | None) -> Principal:
        """The principal of a bearer access token, checked against the user row here
        (and, for this node's own tokens, against their session); raises
        `NotAuthenticatedError`."""
        if not token:
            raise NotAuthenticatedError("missing_token")
        mark = await self.store.auth_mark()
        checked = self._checked.get(token)
        if checked is not None:
            if checked[0] == mark and self.now_ms() // 1000 < checked[2]:
                return checked[1]
            del self._checked[token]
        return await self._checks.run((token, mark), lambda: self._check(token, mark))

    async def _check(self, token: str, mark: tuple[int, int]) -> Principal:
        try:
            issuer, version = token_key_id(token)
            public_key = await self._key_for(issuer, version)
            claims = verify_access_token(token, public_key=public_key, now_s=self.now_ms() // 1000)
        except TokenError as exc:
            raise NotAuthenticatedError(exc.reason) from None
        user = await self._user(claims.sub)
        reason = refusal(user, claims.rev)
        if reason is None and user is not None and (user["role"] != claims.role or user["site"] != claims.site):
            reason = "user_changed"
        if reason is None and claims.iss == self.node_id:
            session = await self.store.session(claims.sid)
            if session is None or session.revoked_ms is not None or session.user_id != claims.sub:
                reason = "session_ended"
        if reason is not None:
            raise NotAuthenticatedError(reason)
        assert user is not None
        principal = _principal(user, claims)
        if len(self._checked) >= CHECKED_TOKENS:
            self._checked.clear()
            self._derived.clear()
        self._checked[token] = (mark, principal, claims.exp)
        return principal

    async def derive(self, token: str, principal: Principal, make: Callable[[], Awaitable[Any]]) -> Any:
        """What the edge derives from ``principal`` (its actor, with its team):
        made once for each principal `authenticate` returns for ``token`` (so
        again only when the token was checked again), by one of the requests
        that ask for it meanwhile."""
        derived = self._derived.get(token)
        if derived is not None and derived[0] is principal:
            return derived[1]

        async def made() -> Any:
            value = await make()
            self._derived[token] = (principal, value)
            return value

        return await self._derivations.run((token, principal), made)

    async def _key_for(self, issuer: str, version: int) -> bytes:
        if issuer == self.node_id:
            identity = self.keystore.identity_for(version)
            if identity is None:
                raise TokenError("unknown_key", issuer)
            return identity.public().sign_pub
        if issuer not in self.trusted:
            raise TokenError("untrusted_issuer", issuer)
        record = await self.store.node(issuer)
        if record is None or record.sign_pub is None or record.key_version != version:
            raise TokenError("unknown_key", issuer)
        return record.sign_pub

    # ------------------------------------------------------------ devices

    async def enroll_device(self, principal: Principal, label: str | None, *,
                            device_id: str | None = None) -> DeviceCredential:
        """Enrol a phone for the signed-in user: its credential, shown once.
        ``device_id``: the id the phone's node id carries (`server.phones`), else a new one."""
        now = self.now_ms()
        user = await self._user(principal.user_id)
        rev = 0 if user is None else int(user["tokens_valid_after_ms"])
        reason = refusal(user, rev)
        if reason is not None:
            raise NotAuthenticatedError(reason)
        secret = self._new_secret(DEVICE_PREFIX)
        device = DeviceRecord(device_id=device_id or self._new_id(now), user_id=principal.user_id,
                              secret_hash=secret_digest(secret), label=label, rev=rev, enrolled_ms=now)
        await self.store.add_device(device)
        log.info("auth.device enrolled", extra={"user_id": principal.user_id, "device_id": device.device_id})
        return DeviceCredential(device_id=device.device_id, device_secret=secret, user_id=principal.user_id)

    async def device_user(self, device_id: str) -> dict[str, Any]:
        """The user row of an enrolled phone, while the phone may still act for
        them: raises `NotAuthenticatedError` for a revoked phone, or a user
        disabled, deleted or revoked since, or moved to another role or site
        (``user_changed``)."""
        device = await self.store.device(device_id)
        if device is None or device.revoked_ms is not None:
            raise NotAuthenticatedError("device_credentials")
        user = await self._user(device.user_id)
        reason = refusal(user, device.rev)
        if reason is None and user is not None and (user["site"] != self.node_id or user["role"] != "account_manager"):
            reason = "user_changed"
        if reason is not None:
            log.info("auth.device refused", extra={"reason": reason, "device_id": device_id})
            raise NotAuthenticatedError(reason)
        return user  # type: ignore[return-value]

    async def device_sign_in(self, device_id: str, device_secret: str, *, address: str) -> TokenPair:
        """A new session for an enrolled phone, limited to the user who enrolled it."""
        self._check_limits(address, None)
        device = await self.store.device(device_id)
        presented = secret_digest(device_secret)
        if device is None or device.revoked_ms is not None or not hmac.compare_digest(device.secret_hash, presented):
            self.by_address.record(address)
            log.info("auth.device refused", extra={"reason": "device_credentials"})
            raise NotAuthenticatedError("device_credentials")
        user = await self._user(device.user_id)
        reason = refusal(user, device.rev)
        if reason is not None:
            log.info("auth.device refused", extra={"reason": reason, "device_id": device_id})
            raise NotAuthenticatedError(reason)
        assert user is not None
        return await self._open_session(user, device_id=device.device_id)

    # ------------------------------------------------------------ randomness

    def _new_id(self, now_ms: int) -> str:
        return new_ulid(now_ms, self.entropy(10))

    def _new_secret(self, prefix: str) -> str:
        return prefix + base64.urlsafe_b64encode(self.entropy(SECRET_BYTES)).rstrip(b"=").decode("ascii")


def _principal(user: dict[str, Any], claims: AccessClaims) -> Principal:
    return Principal(
        user_id=claims.sub, username=user["username"] or "", role=claims.role, site=claims.site, team=user["team"],
        device_id=claims.dev, issuer=claims.iss, session_id=claims.sid,
    )
